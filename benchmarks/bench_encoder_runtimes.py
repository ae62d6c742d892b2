"""SAM image-encoder runtimes on the CPU: torch fp32, torch bf16 (autocast), ONNX Runtime fp32
and ONNX Runtime dynamic int8, per architecture, with their parity against torch fp32.

Full-size architectures with random weights (vit_b: SAM ViT-B; vit_t: MobileSAM's TinyViT;
efficientvit_l0 ... efficientvit_xl1: EfficientViT-SAM, package efficientsam).
Compute does not depend on the weight values, so seconds per slice transfer to real
checkpoints; mask agreement does not (random weights give near-zero logits, where any
rounding flips pixels): never read segmentation quality from these numbers. A plain script,
not a test:

    .venv/bin/python benchmarks/bench_encoder_runtimes.py [--models vit_b,vit_t] [--slices 2]
        [--threads 2] [--runtimes torch,bf16,onnx,onnx-int8] [--json OUT]

Per runtime: seconds per slice (wall, and CPU seconds of the process, which counts every
thread: on a loaded machine wall >> CPU / threads), one-off cost (ONNX export or quantisation,
not counted per slice), and against torch fp32 on the same slices: max |embedding difference|,
max |logit difference| and mask IoU (min, mean) over point+box, box and point+box+mask prompt
sets with 3 masks each.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: SAMFewShotLib, Testing

from SAMFewShotLib.sam import onnx_encoder
from SAMFewShotLib.sam.architecture import official_architecture
from SAMFewShotLib.sam.decoder import Prompt, decode_slices
from SAMFewShotLib.sam.efficientvit import encoder_input_side
from SAMFewShotLib.sam.encoder import encode_slices
from SAMFewShotLib.sam.model_building import build_sam
from SAMFewShotLib.sam.preprocess import Preprocessing
from SAMFewShotLib.volume import Volume
from Testing.phantoms import ellipsoid, render

RUNTIMES = ("torch", "bf16", "onnx", "onnx-int8")


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def ct_volume(n_slices: int, size: int = 512) -> Volume:
    """(n_slices, size, size) CT-like phantom in HU, 0.8 x 0.8 x 2.5 mm."""
    shape = (n_slices, size, size)
    truth = ellipsoid((n_slices / 2, size * 0.5, size * 0.45), (n_slices, size * 0.2, size * 0.25), shape)
    return Volume(render(truth, seed=0) * 200.0 - 100.0, spacing=(0.8, 0.8, 2.5))


def prompts(size: int) -> list[Prompt]:
    centre = np.array([[size * 0.45, size * 0.5]])
    box = np.array([size * 0.2, size * 0.3, size * 0.7, size * 0.7])
    yy, xx = np.mgrid[:256, :256]
    mask = (-8.0 * (np.hypot((yy - 128) / 50, (xx - 115) / 64) - 1))[None].astype(np.float32)
    return [
        Prompt(points=centre, labels=np.array([1]), box=box),
        Prompt(box=box),
        Prompt(points=centre, labels=np.array([1]), box=box, mask_input=mask),
    ]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def timed_encode(sam, volume, slices, prep, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    encoded = encode_slices(sam, "bench", volume, 0, slices, prep, **kwargs)
    return encoded, (time.perf_counter() - wall) / len(slices), (time.process_time() - cpu) / len(slices)


def compare(sam, reference, other, slices, size) -> dict:
    sets = prompts(size)
    a = decode_slices(sam, [(reference[s], sets) for s in slices])
    b = decode_slices(sam, [(other[s], sets) for s in slices])
    ious = [iou(x.masks[p, c], y.masks[p, c]) for x, y in zip(a, b) for p in range(len(sets)) for c in range(3)]
    return {
        "embedding_max_abs": max(float((reference[s].embedding - other[s].embedding).abs().max()) for s in slices),
        "logit_max_abs": max(float(np.abs(x.logits - y.logits).max()) for x, y in zip(a, b)),
        "logit_scale": max(float(np.abs(x.logits).max()) for x in a),
        "mask_iou_min": min(ious),
        "mask_iou_mean": float(np.mean(ious)),
        "pixels_flipped": max(float((x.masks != y.masks).mean()) for x, y in zip(a, b)),
    }


def bench_model(model_type: str, runtimes, n_slices: int, threads: int, home: Path) -> list[dict]:
    torch.manual_seed(0)
    sam = build_sam(official_architecture(model_type)).eval()
    volume = ct_volume(n_slices + 1)
    slices = list(range(1, n_slices + 1))
    prep = Preprocessing.for_volume(volume)
    size = volume.shape[1]
    sha = f"{model_type}-random".encode().hex().ljust(64, "0")[:64]
    # warm-up: one slice through torch (allocator, thread pool), not timed
    encode_slices(sam, "warm", volume, 0, [0], prep)
    reference, wall, cpu = timed_encode(sam, volume, slices, prep)
    rows = [{"model": model_type, "runtime": "torch fp32", "wall_s": wall, "cpu_s": cpu, "one_off_s": 0.0}]
    for runtime in runtimes:
        if runtime == "torch":
            continue
        if runtime == "bf16":
            encoded, wall, cpu = timed_encode(sam, volume, slices, prep, dtype=torch.bfloat16)
            one_off = 0.0
        else:
            start = time.perf_counter()
            encoder = onnx_encoder.onnx_image_encoder(sam, sha, runtime, num_threads=threads, home=home)
            side = encoder_input_side(sam.image_encoder)  # 512 for EfficientViT-SAM L
            # warm-up run: ORT's first call plans memory (in each thread, for a light encoder's concurrent slices)
            encoder(torch.zeros(encoder.slices_per_call, 3, side, side))
            one_off = time.perf_counter() - start
            encoded, wall, cpu = timed_encode(sam, volume, slices, prep, image_encoder=encoder)
        row = {"model": model_type, "runtime": {"bf16": "torch bf16", "onnx": "ONNX fp32"}.get(runtime, "ONNX int8"),
                   "wall_s": wall, "cpu_s": cpu, "one_off_s": one_off}
        row.update(compare(sam, reference, encoded, slices, size))
        rows.append(row)
        print(f"  {row['runtime']:10} {wall:6.2f} s/slice wall {cpu:6.2f} CPU s  ({load()})", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vit_b,vit_t", help="architectures, comma-separated")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"from {','.join(RUNTIMES)}")
    parser.add_argument("--slices", type=int, default=2, help="timed slices per runtime (512x512 CT phantom)")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    runtimes = [r for r in args.runtimes.split(",") if r]
    for r in runtimes:
        if r not in RUNTIMES:
            parser.error(f"unknown runtime {r!r}; choose from {','.join(RUNTIMES)}")
    torch.set_num_threads(args.threads)
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, threads {args.threads}, {load()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as home:
        for model_type in [m for m in args.models.split(",") if m]:
            print(f"{model_type}:", flush=True)
            rows += bench_model(model_type, runtimes, args.slices, args.threads, Path(home))
    print("\n| model | runtime | s/slice (wall) | CPU s/slice | one-off s | max abs logit diff | mask IoU min / mean |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        parity = (
            "reference" if "logit_max_abs" not in r
            else f"{r['logit_max_abs']:.2e} (of {r['logit_scale']:.2f}) | "
            f"{r['mask_iou_min']:.4f} / {r['mask_iou_mean']:.4f}"
        )
        if "logit_max_abs" not in r:
            parity += " | -"
        print(f"| {r['model']} | {r['runtime']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['one_off_s']:.1f} "
              f"| {parity} |")
    print(load())
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
