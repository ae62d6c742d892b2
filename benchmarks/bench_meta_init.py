"""Does a meta-learned init (Algorithm 2) let the paper's per-pair SGD (Algorithm 1) learn?

Meta-trains an init on the tiny random SAM of the tests over phantom volumes other than the
test volume (``Testing.meta.meta_cases.textured_organs``: the striped target, label 1, and two
same-intensity blobs, labels 2 and 3), then runs the meta engine from it on the test phantom
(``textured_case(1)``, never seen in meta-training) with K = 3 (slices 4, 8, 12) and K = 1
(slice 8) drawn: Dice on the unannotated slices, next to copying the nearest drawn mask.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_meta_init.py --iterations 60 \\
        --tasks-per-step 2 --inner-steps 4 --alpha 0.05 --meta-lr 1e-3 --eval "S=24" "S=24, alpha=0.2"

``--held-out 1`` is the paper's leave-one-organ-out: meta-train on the blobs only (labels 2, 3),
so the striped target's kind of structure is never a meta-training task. ``--save INIT.pt``
keeps the init. Every ``--eval`` argument is one online configuration (S, alpha, optimizer).
One torch thread.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: SAMFewShotLib, Testing

from SAMFewShotLib.baselines import copy_nearest_drawn  # noqa: E402
from SAMFewShotLib.engines.meta import MetaEngine  # noqa: E402
from SAMFewShotLib.meta.config import MetaConfig, MetaTrainingSettings  # noqa: E402
from SAMFewShotLib.meta.init_file import MetaInit, load_init, save_init  # noqa: E402
from SAMFewShotLib.meta.load import load_meta_model  # noqa: E402
from SAMFewShotLib.meta.meta_learning import meta_train  # noqa: E402
from SAMFewShotLib.meta.tasks import tasks_from_volumes  # noqa: E402
from SAMFewShotLib.volume import LabelVolume  # noqa: E402
from Testing.meta import meta_cases  # noqa: E402


def keywords(text: str) -> dict:
    """'S=24, alpha=0.02' -> {"S": 24, "alpha": 0.02} (literals only)."""
    call = ast.parse(f"f({text})", mode="eval").body
    assert isinstance(call, ast.Call)
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}


def train_init(checkpoint: str, args, path: Path) -> dict:
    config = MetaConfig(
        steps=args.inner_steps, learning_rate=args.alpha, online_optimizer=args.optimizer, checkpointing=False
    )
    settings = MetaTrainingSettings(
        iterations=args.iterations, tasks_per_step=args.tasks_per_step, shots=args.shots, queries=args.queries,
        meta_lr=args.meta_lr, seed=args.seed,
    )
    cases = []
    for seed in range(args.first_seed, args.first_seed + args.volumes):
        volume, labels = meta_cases.textured_organs(seed, jitter=args.jitter)
        cases.append((f"case{seed}", volume, LabelVolume(volume.with_array(labels))))
    tasks, _ = tasks_from_volumes(cases, held_out=args.held_out)
    meta = load_meta_model(checkpoint, config=config)
    start = time.perf_counter()
    every = max(1, args.iterations // 10)

    def progress(stage, done, total):
        if stage == "meta-train" and done and done % every == 0:
            print(f"  meta-step {done}/{total}: {time.perf_counter() - start:.0f} s", flush=True)

    result = meta_train(meta.network, tasks, settings, progress=progress)
    save_init(
        MetaInit(config=config, names=list(result.state), state=result.state, learning_rates=result.learning_rates,
                 base_sha256=meta.loaded.sha256, base_name=meta.loaded.name, model_type=meta.loaded.model_type,
                 architecture=meta.loaded.architecture.describe(),
                 training={"held_out": args.held_out, "tasks": result.tasks}),
        path,
    )
    q = result.query_losses
    print("query loss per meta-step: " + " ".join(f"{v:.3f}" for v in q), flush=True)
    first, last = np.mean(q[: max(1, len(q) // 10)]), np.mean(q[-max(1, len(q) // 10):])
    print(f"meta-trained {len(tasks)} tasks, {result.iterations} steps in {result.seconds:.0f} s "
          f"(CPU {time.process_time():.0f} s); query loss {first:.3f} -> {last:.3f}", flush=True)
    return {"seconds": result.seconds}


def with_online(init_path: Path, folder: Path, settings: dict) -> Path:
    """A copy of the init with another S, alpha or online optimiser."""
    init = load_init(init_path)
    steps = int(settings.pop("S", init.config.steps))
    alpha = float(settings.pop("alpha", init.config.learning_rate))
    config = MetaConfig.from_dict({**init.config.to_dict(), "steps": steps, "learning_rate": alpha, **settings})
    rates = torch.full((steps, len(init.names)), alpha)
    out = folder / f"init_{abs(hash((steps, alpha, tuple(settings.items()))))}.pt"
    save_init(MetaInit(config=config, names=init.names, state=init.state, learning_rates=rates,
                       base_sha256=init.base_sha256, base_name=init.base_name, model_type=init.model_type,
                       architecture=init.architecture, training=init.training), out)
    return out


def evaluate(checkpoint: str, init: Path | None, text: str) -> str:
    volume, truth = meta_cases.textured_case(1)
    scores = []
    for drawn in ([4, 8, 12], [8]):
        annotation = meta_cases.annotation_of(volume, truth, drawn)
        start = time.perf_counter()
        engine = MetaEngine(checkpoint, init=None if init is None else str(init),
                            config=MetaConfig(checkpointing=False))
        run = engine.propagate(volume, annotation)
        others = [z for z in range(truth.shape[0]) if z not in drawn]
        learned = meta_cases.dice(run.labels.array[others] == 1, truth[others])
        copied = meta_cases.dice(copy_nearest_drawn(annotation)[others] == 1, truth[others])
        scores.append(f"K={len(drawn)} {learned:.3f} (copy {copied:.3f}, {time.perf_counter() - start:.0f} s)")
    return f"{text}: " + "; ".join(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--tasks-per-step", type=int, default=4)
    parser.add_argument("--inner-steps", type=int, default=4, help="S of Algorithm 1 inside meta-training")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--meta-lr", type=float, default=2e-4)
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=10)
    parser.add_argument("--jitter", type=float, default=0.15)
    parser.add_argument("--held-out", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", default=None, help="evaluate this init instead of meta-training one")
    parser.add_argument("--save", default=None)
    parser.add_argument("--eval", nargs="*", default=["S=24"], help="online configurations (S=, alpha=, ...)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print("load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()), flush=True)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        checkpoint = str(meta_cases.small_sam_checkpoint(folder / "small.pth"))
        if args.init:
            init = Path(args.init)
        else:
            init = Path(args.save) if args.save else folder / "init.pt"
            train_init(checkpoint, args, init)
        for text in args.eval:
            settings = keywords(text)
            print(evaluate(checkpoint, with_online(init, folder, dict(settings)), text), flush=True)
        print("load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()), flush=True)


if __name__ == "__main__":
    main()
