"""A/B of the meta engine's deviations from SSM-SAM on the distractor phantom of the tests.

The striped ellipsoid among two same-intensity distractors (``Testing.meta.meta_cases``), a tiny
random SAM, the plain init; Dice on the unannotated slices with K = 3 (slices 4, 8, 12) and K = 1
(slice 8) drawn, next to copying the nearest drawn mask. Each argument is one configuration,
written as MetaConfig keyword arguments (S=N sets the online sweeps):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_meta_ab.py \\
        "learning_rate=0.05" \\
        "learning_rate=2e-3, online_optimizer='adam'" \\
        "learning_rate=2e-3, online_optimizer='adam', prior_in_fusion=True"
"""

from __future__ import annotations

import ast
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: SAMFewShotLib, Testing

from SAMFewShotLib.baselines import copy_nearest_drawn  # noqa: E402
from SAMFewShotLib.engines.meta import MetaEngine  # noqa: E402
from SAMFewShotLib.meta.config import MetaConfig  # noqa: E402
from Testing.meta import meta_cases  # noqa: E402


def keywords(text: str) -> dict:
    """'a=1, b="x"' -> {"a": 1, "b": "x"} (literals only)."""
    call = ast.parse(f"f({text})", mode="eval").body
    assert isinstance(call, ast.Call)
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}


def main() -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print("load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    volume, truth = meta_cases.textured_case(1)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = str(meta_cases.small_sam_checkpoint(Path(folder) / "small.pth"))
        for text in sys.argv[1:] or [""]:
            settings = keywords(text)
            steps = settings.pop("S", 24)
            scores = []
            for drawn in ([4, 8, 12], [8]):
                annotation = meta_cases.annotation_of(volume, truth, drawn)
                start = time.perf_counter()
                engine = MetaEngine(checkpoint, steps=steps, config=MetaConfig(checkpointing=False, **settings))
                run = engine.propagate(volume, annotation)
                others = [z for z in range(truth.shape[0]) if z not in drawn]
                learned = meta_cases.dice(run.labels.array[others] == 1, truth[others])
                copied = meta_cases.dice(copy_nearest_drawn(annotation)[others] == 1, truth[others])
                scores.append(f"K={len(drawn)} {learned:.3f} (copy {copied:.3f}, {time.perf_counter() - start:.0f} s)")
            print(f"S={steps} {text or 'defaults'}: " + "; ".join(scores), flush=True)


if __name__ == "__main__":
    main()
