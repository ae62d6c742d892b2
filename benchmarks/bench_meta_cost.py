"""Cost of the meta engine's online adaptation (SSM-SAM, Algorithm 1) on this machine.

Full-size SAM ViT-B with random weights (compute and memory do not depend on weight values;
never read segmentation quality from this): seconds per online step (one sweep of Algorithm 1:
one SGD update per support pair) over K support slices, seconds per predicted slice, and the
process's peak resident memory, with gradient checkpointing of the ViT blocks (the default) or
without. Wall and process CPU seconds are both printed (wall time is noisy on a shared machine).
A plain script, not a test:

    .venv/bin/python benchmarks/bench_meta_cost.py [--shots 2] [--steps 2] [--threads 2]
                                                [--no-checkpointing] [--size 256] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: SAMFewShotLib, Testing

from SAMFewShotLib.memory import peak_gpu_mib, peak_rss_mib  # noqa: E402
from SAMFewShotLib.meta.config import MetaConfig  # noqa: E402
from SAMFewShotLib.meta.network import SSMSam  # noqa: E402
from SAMFewShotLib.meta.online import PatchCache, SupportSet, adapt  # noqa: E402
from SAMFewShotLib.meta.predict import predict_structure  # noqa: E402
from SAMFewShotLib.meta.slices import prepare  # noqa: E402
from SAMFewShotLib.sam.architecture import official_architecture  # noqa: E402
from SAMFewShotLib.sam.model_building import build_sam  # noqa: E402
from SAMFewShotLib.sam.preprocess import Preprocessing  # noqa: E402
from SAMFewShotLib.volume import Volume  # noqa: E402
from Testing.phantoms import ellipsoid, render  # noqa: E402


def current_rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=2, help="support slices K")
    parser.add_argument("--steps", type=int, default=2, help="online steps to time")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--size", type=int, default=256, help="slice rows and columns")
    parser.add_argument("--no-checkpointing", action="store_true", help="keep the ViT blocks' activations")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average "
          + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs")

    torch.manual_seed(0)
    sam = build_sam(official_architecture("vit_b")).eval().to(args.device)
    config = MetaConfig(steps=args.steps, checkpointing=not args.no_checkpointing)
    network = SSMSam(sam, config)
    trainable = sum(p.numel() for p in network.trainable().values())
    print(
        f"ViT-B random weights; trainable tensors {len(network.trainable())} ({trainable / 1e6:.2f} M values); "
        f"gradient checkpointing {'on' if config.checkpointing else 'off'}; "
        f"RSS after building {current_rss_mb():.0f} MB"
    )

    n = max(args.shots + 2, 6)
    shape = (n, args.size, args.size)
    truth = ellipsoid((n / 2, args.size * 0.5, args.size * 0.45), (n / 1.8, args.size * 0.2, args.size * 0.25), shape)
    volume = Volume(render(truth, seed=0) * 5.0, spacing=(0.9, 0.9, 3.0))
    prep = Preprocessing.for_volume(volume)
    drawn = [int(z) for z in np.linspace(1, n - 2, args.shots).round()]
    supports = [prepare(sam, volume, 0, z, prep, truth[z]) for z in drawn]
    cache = PatchCache(network)
    times: list[float] = []
    cpu_times: list[float] = []
    last = [time.perf_counter(), time.process_time()]

    def progress(stage: str, done: int, total: int) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if done > 0:
            times.append(now - last[0])
            cpu_times.append(cpu - last[1])
            print(f"  step {done}/{total}: {times[-1]:.1f} s wall, {cpu_times[-1]:.1f} CPU-s, "
                  f"peak RSS so far {peak_rss_mib():.0f} MiB", flush=True)
        last[0], last[1] = now, cpu

    result = adapt(network, SupportSet(supports, [], volume, 0, prep, config.max_shift), network_rates(network, config),
                   rng=np.random.default_rng(0), cache=cache, evaluate_final=False, progress=progress)
    per_pass = np.mean(times) / (result.encoder_passes / len(times))
    print(f"online: {np.mean(times):.1f} s wall, {np.mean(cpu_times):.1f} CPU-s per step over K={args.shots} "
          f"support slice(s) ({result.encoder_passes / len(times):.1f} adapted-encoder passes per step, including "
          f"the detached support passes; {per_pass:.1f} s each); {len(times)} steps timed; "
          f"load average now " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    start, cpu_start = time.perf_counter(), time.process_time()
    predicted = predict_structure(network, volume, 0, prep, supports[:1], set(), cache=cache)
    slices = predicted.encoder_passes - 1
    seconds = (time.perf_counter() - start) / max(slices, 1)
    cpu_seconds = (time.process_time() - cpu_start) / max(slices, 1)
    print(f"prediction: {seconds:.1f} s wall, {cpu_seconds:.1f} CPU-s per slice ({slices} slices, adapted encoder "
          "without gradients + decoder)")
    gpu = peak_gpu_mib()
    print(f"peak RSS {peak_rss_mib():.0f} MiB" + (f", peak GPU memory {gpu:.0f} MiB" if gpu is not None else ""))


def network_rates(network: SSMSam, config: MetaConfig) -> torch.Tensor:
    """The plain init's step sizes."""
    return torch.full((config.steps, len(network.trainable())), config.learning_rate)


if __name__ == "__main__":
    main()
