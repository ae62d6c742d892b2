"""Cost of the SAM path on this machine: encoder seconds per slice, decoder ms per prompt set,
a whole 20-slice MR-sized run, and the bf16-vs-fp32 parity of embeddings and decoded masks.

Full-size SAM ViT-B with random weights (compute does not depend on weight values; never read
segmentation quality from these numbers). A plain script, not a test:

    .venv/bin/python benchmarks/bench_sam_cost.py [--slices 20] [--size 256] [--threads 2]
                                               [--batch-size 1] [--no-bf16] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from segment_anything import sam_model_registry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: SAMFewShotLib, Testing

from SAMFewShotLib.sam.decoder import Prompt, decode, decode_slices  # noqa: E402
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache  # noqa: E402
from SAMFewShotLib.sam.encoder import encode_slices  # noqa: E402
from SAMFewShotLib.sam.preprocess import Preprocessing  # noqa: E402
from SAMFewShotLib.volume import Volume  # noqa: E402
from Testing.phantoms import ellipsoid, render  # noqa: E402
from Testing.tiny_sam import build_tiny_sam  # noqa: E402


def mr_volume(n_slices: int, size: int) -> Volume:
    """A (n_slices, size, size) float32 MR-like phantom, 0.9 x 0.9 x 3 mm."""
    shape = (n_slices, size, size)
    truth = ellipsoid((n_slices / 2, size * 0.5, size * 0.45), (n_slices / 2.5, size * 0.2, size * 0.25), shape)
    return Volume(render(truth, seed=0) * 5.0, spacing=(0.9, 0.9, 3.0))


def prompt_for(size: int, low_res: np.ndarray | None = None) -> Prompt:
    """One point + box (+ mask) prompt set around the phantom's structure."""
    centre = np.array([[size * 0.45, size * 0.5]])
    box = np.array([size * 0.2, size * 0.3, size * 0.7, size * 0.7])
    return Prompt(points=centre, labels=np.array([1]), box=box, mask_input=low_res)


def coarse_mask_logits(size: int) -> np.ndarray:
    """(1, 256, 256) low-res mask prompt: a sigmoid-softened disc, as SAM-MPA feeds a coarse mask."""
    yy, xx = np.mgrid[:256, :256]
    distance = np.hypot((yy - 128) / 50, (xx - 115) / 64) - 1
    return (-8.0 * distance)[None].astype(np.float32)


def load() -> str:
    """The machine's load averages: other work on the cores skews every timing here."""
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def bf16_parity(sam, name: str, volume: Volume, prep: Preprocessing, slices: list[int]) -> dict:
    """Max abs embedding/logit difference and min mask IoU of bf16-autocast vs fp32 encoding."""
    fp32 = encode_slices(sam, name, volume, 0, slices, prep)
    bf16 = encode_slices(sam, name, volume, 0, slices, prep, dtype=torch.bfloat16)
    size = volume.shape[1]
    prompts = [prompt_for(size), Prompt(box=prompt_for(size).box), Prompt(mask_input=coarse_mask_logits(size)),
               prompt_for(size, coarse_mask_logits(size))]
    a = decode_slices(sam, [(fp32[s], prompts) for s in slices])
    b = decode_slices(sam, [(bf16[s], prompts) for s in slices])
    emb = max(float((fp32[s].embedding - bf16[s].embedding).abs().max()) for s in slices)
    emb_scale = max(float(fp32[s].embedding.abs().max()) for s in slices)
    logit = max(float(np.abs(x.logits - y.logits).max()) for x, y in zip(a, b))
    logit_scale = max(float(np.abs(x.logits).max()) for x in a)
    ious = [iou(x.masks[p, c], y.masks[p, c]) for x, y in zip(a, b) for p in range(len(prompts)) for c in range(3)]
    flips = max(float((x.masks != y.masks).mean()) for x, y in zip(a, b))
    return dict(model=name, emb=emb, emb_scale=emb_scale, logit=logit, logit_scale=logit_scale,
                iou_min=min(ious), iou_mean=float(np.mean(ious)), flips=flips,
                fp32_s=fp32.stats.seconds / len(slices), bf16_s=bf16.stats.seconds / len(slices))


def time_decode(sam, embedding, prompts, repeat: int = 5, **kwargs) -> float:
    """Best-of-``repeat`` milliseconds per prompt set of one decode call, after one warm-up call."""
    decode(sam, embedding, prompts, **kwargs)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        decode(sam, embedding, prompts, **kwargs)
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / len(prompts)


def whole_run(sam, volume: Volume, prep: Preprocessing, dtype: torch.dtype, batch_size: int, cache_dir: Path) -> dict:
    """Encode every slice, then one point + box + mask prompt set per slice in one batched decode;
    then the same again from a new cache object on the same folder (a new process)."""
    size = volume.shape[1]
    slices = list(range(volume.shape[0]))
    start = time.perf_counter()
    encoded = encode_slices(sam, "vit_b-random", volume, 0, slices, prep, EmbeddingCache(cache_dir),
                            batch_size=batch_size, dtype=dtype)
    encode_s = time.perf_counter() - start
    mask = coarse_mask_logits(size)
    start = time.perf_counter()
    decode_slices(sam, [(encoded[s], prompt_for(size, mask)) for s in slices], multimask_output=False)
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    again = encode_slices(sam, "vit_b-random", volume, 0, slices, prep, EmbeddingCache(cache_dir), dtype=dtype)
    decode_slices(sam, [(again[s], prompt_for(size, mask)) for s in slices], multimask_output=False)
    rerun_s = time.perf_counter() - start
    return dict(encode_s=encode_s, decode_s=decode_s, total_s=encode_s + decode_s, calls=encoded.stats.encoder_calls,
                rerun_s=rerun_s, rerun_calls=again.stats.encoder_calls)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=20, help="slices of the whole-run volume")
    parser.add_argument("--size", type=int, default=256, help="in-plane size of the whole-run volume")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--batch-size", type=int, default=1, help="slices per encoder call")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 parity and timing")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, {load()}")

    start = time.perf_counter()
    torch.manual_seed(0)
    vit_b = sam_model_registry["vit_b"]().eval().to(args.device)
    print(f"vit_b built with random weights in {time.perf_counter() - start:.1f} s")
    volume = mr_volume(args.slices, args.size)
    prep = Preprocessing.for_volume(volume)

    if not args.no_bf16:
        tiny = build_tiny_sam().to(args.device)
        spread = lambda k: sorted({int(i) for i in np.linspace(0, args.slices - 1, k + 2)[1:-1]})  # noqa: E731
        rows = [
            bf16_parity(tiny, "tiny", volume, prep, spread(4)),
            bf16_parity(vit_b, "vit_b", volume, prep, spread(2)),
        ]
        print("\nbf16 autocast vs fp32 (point+box, box, mask, point+box+mask prompt sets; 3 masks each)")
        print(f"{'model':6} {'emb |d|max':>11} {'emb |max|':>10} {'logit |d|max':>13} {'logit |max|':>12} "
              f"{'IoU min':>8} {'IoU mean':>9} {'px flipped':>10} {'fp32 s/sl':>10} {'bf16 s/sl':>10}")
        for r in rows:
            print(
                f"{r['model']:6} {r['emb']:11.4f} {r['emb_scale']:10.3f} {r['logit']:13.4f} {r['logit_scale']:12.3f} "
                f"{r['iou_min']:8.4f} {r['iou_mean']:9.4f} {r['flips']:10.4%} {r['fp32_s']:10.2f} {r['bf16_s']:10.2f}"
            )

    embedding = encode_slices(vit_b, "vit_b-random", volume, 0, [args.slices // 2], prep)[args.slices // 2]
    mask = coarse_mask_logits(args.size)
    kinds = {
        "point": [Prompt(points=prompt_for(args.size).points, labels=np.array([1]))],
        "box": [Prompt(box=prompt_for(args.size).box)],
        "point+box+mask": [prompt_for(args.size, mask)],
        "point+box+mask x20 (one call)": [prompt_for(args.size, mask)] * 20,
    }
    print(f"\ndecoder, vit_b, {args.size}x{args.size} slice, ms per prompt set (best of 5)")
    for name, prompts in kinds.items():
        print(f"  {name:32} 3 masks {time_decode(vit_b, embedding, prompts):7.1f}   "
              f"1 mask {time_decode(vit_b, embedding, prompts, multimask_output=False):7.1f}")

    dtypes = [torch.float32] + ([] if args.no_bf16 else [torch.bfloat16])
    print(f"\nwhole run: {args.slices} slices of {args.size}x{args.size}, encode (batch {args.batch_size}) + "
          "one point+box+mask prompt set per slice (1 mask, one batched decode); "
          "re-run = new cache object on the same folder")
    print(f"{'precision':9} {'encode s':>9} {'s/slice':>8} {'calls':>6} {'decode s':>9} {'total s':>8} "
          f"{'re-run s':>9} {'re-run calls':>13}")
    for dtype in dtypes:
        with tempfile.TemporaryDirectory() as folder:
            r = whole_run(vit_b, volume, prep, dtype, args.batch_size, Path(folder))
        print(f"{str(dtype).split('.')[-1]:9} {r['encode_s']:9.1f} {r['encode_s'] / args.slices:8.2f} {r['calls']:6d} "
              f"{r['decode_s']:9.2f} {r['total_s']:8.1f} {r['rerun_s']:9.2f} {r['rerun_calls']:13d}")
    print(load())


if __name__ == "__main__":
    main()
