"""Cost of RRL-MedSAM on the CPU (not collected by pytest; random weights: cost only, no quality).

Measures:

1. the lightweight encoder's parameter count against SAM ViT-B's image encoder (89.7 M);
2. the joint registration-segmentation (JRS) forward pass for one 128^3 (atlas, target) pair,
   and the segmentation-only forward that applying a bundle runs;
3. one training iteration at 128^3 as ``atlas train`` runs it (``Trainer.step``: TorchIO
   augmentation, medical step, mutual EMA, general step, mutual EMA), wall and CPU seconds;
4. one stage-1 distillation step on one slice with a full-size random ViT-B teacher
   (``build_sam(official_architecture("vit_b"))``): the teacher encoding of the slice at 1024^2
   + the student step on the working-grid slice (size / 2 pixels) it is distilled at.

Usage::

    .venv/bin/python benchmarks/bench_rrl.py [--threads N] [--size 128] [--classes 8] [--repeats 3]
                                          [--skip-distillation] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from SAMFewShotLib.atlas.rrl.data import TrainingData  # noqa: E402
from SAMFewShotLib.atlas.rrl.lightweight_encoder import LightweightEncoder, parameter_count  # noqa: E402
from SAMFewShotLib.atlas.rrl.model import RRLConfig, RRLMedSAM  # noqa: E402
from SAMFewShotLib.atlas.rrl.training import Trainer, TrainSettings  # noqa: E402
from SAMFewShotLib.atlas.rrl.volume_features import encode_slices  # noqa: E402
from SAMFewShotLib.sam.architecture import official_architecture  # noqa: E402
from SAMFewShotLib.sam.model_building import build_sam  # noqa: E402


def _timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "runs_s": [round(t, 3) for t in times]}


def bench_parameters() -> dict:
    vit_b = parameter_count(build_sam(official_architecture("vit_b"), init_weights=False).image_encoder)
    light = parameter_count(LightweightEncoder())
    return {"lightweight_encoder": light, "vit_b_encoder": vit_b, "ratio": light / vit_b}


def bench_forward(size: int, classes: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = RRLMedSAM(RRLConfig(size=size, n_classes=classes)).eval()
    atlas, target = torch.rand(1, 1, size, size, size), torch.rand(1, 1, size, size, size)
    with torch.inference_mode():
        model(atlas, target)  # warm-up
        jrs = _timed(lambda: model(atlas, target), repeats)
        segment = _timed(lambda: model.upsample_logits(model.segment(target).medical_logits).argmax(1), repeats)
    return {"jrs_forward": _summary(jrs), "segment_forward": _summary(segment), "parameters": parameter_count(model)}


def bench_training(size: int, classes: int, repeats: int) -> dict:
    onehot = torch.softmax(torch.randn(1, classes, size // 2, size // 2, size // 2), dim=1)
    data = TrainingData(torch.rand(1, 1, size, size, size), onehot, [torch.rand(1, 1, size, size, size)], [], [])
    trainer = Trainer(data, RRLConfig(size=size, n_classes=classes), TrainSettings(), torch.device("cpu"))
    trainer.iteration = 1000  # the Dice term at full weight
    trainer.step()  # warm-up
    cpu = time.process_time()
    times = _timed(trainer.step, repeats)
    cpu_per_iteration = (time.process_time() - cpu) / repeats
    return {"seconds_per_iteration": _summary(times), "cpu_seconds_per_iteration": cpu_per_iteration}


def bench_distillation(size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    teacher = build_sam(official_architecture("vit_b")).eval()
    student = LightweightEncoder(embed_dim=256)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    x = torch.randn(1, 3, 1024, 1024)

    def teacher_encode():
        with torch.inference_mode():
            return teacher.image_encoder(x)

    target = teacher_encode().clone()

    target = torch.nn.functional.adaptive_avg_pool2d(target, size // 2 // 16)
    working_slice = torch.rand(1, 1, size // 2, size // 2)

    def student_step():
        loss = torch.nn.functional.mse_loss(encode_slices(student, working_slice, "neck")[3], target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    student_step()  # warm-up
    teacher_times = _timed(teacher_encode, max(1, repeats - 1))
    student_times = _timed(student_step, repeats)
    return {
        "teacher_encode_vit_b": _summary(teacher_times),
        "student_step": _summary(student_times),
        "step_with_uncached_teacher_s": statistics.median(teacher_times) + statistics.median(student_times),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--classes", type=int, default=8, help="output classes incl. background (8 = 7 structures)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-distillation", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = {
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": os.getloadavg()[0],
        "size": args.size,
        "classes": args.classes,
        "parameters": bench_parameters(),
    }
    print(json.dumps(result["parameters"]), flush=True)
    result["forward"] = bench_forward(args.size, args.classes, args.repeats)
    print(json.dumps(result["forward"]), flush=True)
    result["training"] = bench_training(args.size, args.classes, args.repeats)
    print(json.dumps(result["training"]), flush=True)
    if not args.skip_distillation:
        result["distillation"] = bench_distillation(args.size, args.repeats)
        print(json.dumps(result["distillation"]), flush=True)
    result["load_average_1min_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
