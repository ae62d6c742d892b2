"""SAM's mask decoder on the CPU: ms per prompt set, the official per-prompt path against the
batched SAM-MPA path (sam/refinement.refine_slices: slices' prompt sets in one call, feedback
rounds reusing the sparse prompt embeddings, only the last round brought to the slice grid).

Random weights of the full-size decoder (prompt dim 256, two-way transformer depth 2, MLP 2048):
ViT-B/L/H and MobileSAM's TinyViT share this decoder, so one measurement covers them. Cost does
not depend on the weights' values. A plain script, not a test:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_decoder.py [--size 512] [--slices 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from SAMFewShotLib.sam.embedding_cache import SliceEmbedding  # noqa: E402
from SAMFewShotLib.sam.refinement import refine_slices, slice_prompts  # noqa: E402


class _NoImageEncoder(torch.nn.Module):
    """Stands in for the image encoder: the decoder only reads ``img_size``."""

    img_size = 1024


def full_size_decoder_sam() -> Sam:
    """A Sam with the full-size prompt encoder and mask decoder (random weights), no image encoder."""
    torch.manual_seed(0)
    return Sam(
        image_encoder=_NoImageEncoder(),
        prompt_encoder=PromptEncoder(
            embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    ).eval()


def requests(n_slices: int, size: int) -> list[tuple[SliceEmbedding, np.ndarray]]:
    """(random embedding, one-component coarse mask) per slice of a size x size image."""
    generator = torch.Generator().manual_seed(1)
    out = []
    for z in range(n_slices):
        coarse = np.zeros((size, size), bool)
        lo, hi = size // 4 + z, 3 * size // 4 - z
        coarse[lo:hi, lo + 5 : hi + 10] = True
        out.append((SliceEmbedding(torch.randn(256, 64, 64, generator=generator), (size, size), (1024, 1024),
                                   (size, size)), coarse))
    return out


def official(sam: Sam, embedding: SliceEmbedding, prompt, rounds: int) -> None:
    """SamPredictor.predict's path for one prompt set: prompt encoder + MaskDecoder.forward (which
    repeats the image embedding) + postprocess to the original size, once per round."""
    from segment_anything.utils.transforms import ResizeLongestSide

    transform = ResizeLongestSide(1024)
    size = embedding.original_size
    mask = torch.as_tensor(prompt.mask_input)[None]
    with torch.inference_mode():
        for _ in range(rounds):
            points = (torch.as_tensor(transform.apply_coords(prompt.points, size), dtype=torch.float)[None],
                      torch.as_tensor(prompt.labels, dtype=torch.int)[None])
            box = torch.as_tensor(transform.apply_boxes(prompt.box, size), dtype=torch.float)
            sparse, dense = sam.prompt_encoder(points=points, boxes=box, masks=mask)
            low_res, _ = sam.mask_decoder(embedding.embedding[None], sam.prompt_encoder.get_dense_pe(), sparse, dense,
                                          multimask_output=False)
            sam.postprocess_masks(low_res, embedding.input_size, size)
            mask = low_res


def timed(function, repeat: int) -> tuple[float, float]:
    """Best wall and matching CPU seconds of ``repeat`` calls after one warm-up call."""
    function()
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="slice rows = cols")
    parser.add_argument("--slices", type=int, default=16, help="slices decoded together")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--refine", type=int, default=1, help="post-refinement rounds")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {load()}")
    sam = full_size_decoder_sam()
    work = requests(args.slices, args.size)
    rounds = 1 + args.refine
    prompt = slice_prompts(work[0][0], work[0][1])[0]
    wall, cpu = timed(lambda: official(sam, work[0][0], prompt, rounds), args.repeat)
    per = 1000.0 / rounds
    print(f"\nfull-size decoder, {args.size}x{args.size} slices, 1 prompt set per slice, {rounds} rounds "
          f"(refine {args.refine}); ms per prompt set per round (best of {args.repeat}): wall / CPU")
    print(f"  official path (SamPredictor.predict per prompt set)      {wall * per:7.1f} / {cpu * per:7.1f}")
    wall, cpu = timed(lambda: refine_slices(sam, work[:1], args.refine), args.repeat)
    print(f"  refine_slices, 1 slice                                   {wall * per:7.1f} / {cpu * per:7.1f}")
    wall, cpu = timed(lambda: refine_slices(sam, work, args.refine), args.repeat)
    per_set = per / args.slices
    print(f"  refine_slices, {args.slices:2d} slices in one call                     "
          f"{wall * per_set:7.1f} / {cpu * per_set:7.1f}")
    print(f"  -> per slice with refine {args.refine}: {wall * 1000 / args.slices:.1f} ms wall, "
          f"{cpu * 1000 / args.slices:.1f} ms CPU")
    print(load())


if __name__ == "__main__":
    main()
