"""Cost of the ``fewshot`` engine's training and prediction with a full-size SAM ViT-B.

Random weights (compute does not depend on weight values; never read segmentation quality
from these numbers). The image encoder is left out of the training cost: embeddings of the k
annotated slices are put in the embedding cache first (random 256 x 64 x 64 embeddings under
the keys the engine looks up), exactly as after a first run or a prior encoding, so
``fit_head`` finds every embedding cached (its encoder-call counter is printed to prove it).
One real encoder call on one slice is timed separately. "cpu s" is the process's CPU time
(user + system, all threads): on a machine shared with other work, wall time grows with the
load while CPU time of a one-thread run stays close to its wall time on an idle core. A plain
script, not a test:

    .venv/bin/python benchmarks/bench_fewshot_cost.py [--shots 5] [--size 512] [--threads 2]
                                                   [--iterations N] [--no-encoder] [--runs 0,1,2]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: SAMFewShotLib, Testing

from SAMFewShotLib.annotation import SparseAnnotation  # noqa: E402
from SAMFewShotLib.fewshot.fit import fit_head  # noqa: E402
from SAMFewShotLib.fewshot.inference import predict_slices  # noqa: E402
from SAMFewShotLib.fewshot.training import TrainingConfig, default_iterations  # noqa: E402
from SAMFewShotLib.memory import peak_rss_mib  # noqa: E402
from SAMFewShotLib.sam.architecture import official_architecture  # noqa: E402
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache, EmbeddingKey, SliceEmbedding, volume_digest  # noqa: E402
from SAMFewShotLib.sam.encoder import PRECISIONS, encode_slices  # noqa: E402
from SAMFewShotLib.sam.model_building import build_sam  # noqa: E402
from SAMFewShotLib.sam.model_loading import LoadedModel  # noqa: E402
from SAMFewShotLib.sam.preprocess import Preprocessing  # noqa: E402
from SAMFewShotLib.volume import LabelVolume, Volume  # noqa: E402
from Testing.phantoms import ellipsoid, render  # noqa: E402

MODEL_DIGEST = "vit_b-random-weights"


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def ct_case(shots: int, size: int) -> tuple[Volume, SparseAnnotation, np.ndarray]:
    """A (3 * shots + 4, size, size) phantom, 0.8 x 0.8 x 3 mm, one structure drawn on ``shots``
    evenly spaced slices; returns the image, the annotation and the unannotated slices."""
    n = 3 * shots + 4
    shape = (n, size, size)
    truth = ellipsoid((n / 2, size * 0.5, size * 0.45), (n / 2 - 1, size * 0.2, size * 0.25), shape)
    image = Volume(render(truth, seed=0), spacing=(0.8, 0.8, 3.0))
    drawn = [int(z) for z in np.linspace(2, n - 3, shots).round()]
    labels = np.zeros(shape, np.uint8)
    for z in drawn:
        labels[z][truth[z]] = 1
    annotation = SparseAnnotation.from_labels(LabelVolume(image.with_array(labels)), axis=0)
    return image, annotation, np.array([z for z in range(n) if z not in drawn])


def fill_cache(cache: EmbeddingCache, image: Volume, slices, preprocessing: Preprocessing, size: int) -> None:
    """Random (256, 64, 64) embeddings for ``slices`` under the engine's cache keys."""
    digest = volume_digest(image)
    generator = torch.Generator().manual_seed(0)
    for z in slices:
        key = EmbeddingKey(digest, 0, int(z), preprocessing.key(), MODEL_DIGEST, PRECISIONS[torch.float32])
        embedding = torch.randn((256, 64, 64), generator=generator)
        cache.put(key, SliceEmbedding(embedding, (size, size), (1024, 1024), (size, size)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=5, help="annotated slices (k)")
    parser.add_argument("--size", type=int, default=512, help="in-plane size of the slices")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--iterations", type=int, default=None, help="training iterations (default: the schedule)")
    parser.add_argument("--no-encoder", action="store_true", help="skip timing one real encoder call")
    parser.add_argument("--runs", default="0,1,2", help="which training runs (0 default, 1 full, 2 full bf16)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {load()}")

    start = time.perf_counter()
    torch.manual_seed(0)
    sam = build_sam(official_architecture("vit_b")).eval()
    model = LoadedModel("vit_b-random", "vit_b", "sam", MODEL_DIGEST, Path("random"), official_architecture("vit_b"))
    print(f"vit_b built with random weights in {time.perf_counter() - start:.1f} s; rss {peak_rss_mib()} MiB")

    image, annotation, unannotated = ct_case(args.shots, args.size)
    preprocessing = Preprocessing.for_volume(image)
    cache = EmbeddingCache.memory_only()
    fill_cache(cache, image, range(image.shape[0]), preprocessing, args.size)
    schedule = default_iterations(args.shots)
    print(f"{args.shots} shots on {image.shape} (z, y, x); schedule {schedule} iterations")

    full = dict(iterations=args.iterations, patience=10**6)
    runs = [("default (early stopping)", TrainingConfig(iterations=args.iterations)),
            ("full schedule (no early stop)", TrainingConfig(**full)),
            ("full schedule, bf16 autocast", TrainingConfig(**full, precision="bf16"))]
    print(f"\n{'training':30} {'iters':>6} {'best':>5} {'train s':>8} {'s/iter':>7} {'cpu s':>7} {'enc calls':>9} "
          f"{'rss MiB':>8}")
    for name, config in [runs[int(i)] for i in args.runs.split(",")]:
        cpu = time.process_time()
        fit = fit_head(sam, model, image, annotation, preprocessing, cache=cache, config=config)
        cpu = time.process_time() - cpu
        t = fit.training
        print(f"{name:30} {t.iterations:6d} {t.best_iteration:5d} {t.seconds:8.1f} {t.seconds / max(t.iterations, 1):7.3f} "
              f"{cpu:7.1f} {fit.encoding.encoder_calls:9d} {peak_rss_mib():8.0f}  ({load()})")

    digest = volume_digest(image)
    embeddings = {int(z): cache.get(EmbeddingKey(digest, 0, int(z), preprocessing.key(), MODEL_DIGEST)) for z in unannotated}
    requests = [(z, 0) for z in embeddings]
    predict_slices(sam, fit.decoder, fit.head.tokens(), embeddings, requests[:1])  # warm-up
    start = time.perf_counter()
    predict_slices(sam, fit.decoder, fit.head.tokens(), embeddings, requests)
    seconds = time.perf_counter() - start
    print(f"\ninference: {len(requests)} slices of {args.size}x{args.size} in {seconds:.2f} s = "
          f"{seconds / len(requests):.3f} s per slice (batches of 4, full-resolution probabilities)")

    if not args.no_encoder:
        start = time.perf_counter()
        encoded = encode_slices(sam, "fresh", image, 0, [int(unannotated[0])], preprocessing)
        print(f"encoder (excluded above): {time.perf_counter() - start:.1f} s for one {args.size}x{args.size} slice "
              f"({encoded.stats.encoder_calls} call)")
    print(f"peak RSS {peak_rss_mib()} MiB; {load()}")


if __name__ == "__main__":
    main()
