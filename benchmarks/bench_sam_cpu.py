"""Every SAM-on-the-CPU measurement of the README's SAM section in one command: image-encoder
runtimes per architecture (torch fp32, torch bf16, ONNX fp32, ONNX int8; bench_encoder_runtimes.py)
and the decoder's ms per prompt set (bench_decoder.py), with the machine's load before and after.
Full-size random weights (cost does not depend on their values; never read quality from them).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_sam_cpu.py [--models vit_b,vit_t,efficientvit_l0]
        [--slices 1] [--runtimes torch,bf16,onnx,onnx-int8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vit_b,vit_t,efficientvit_l0")
    parser.add_argument("--runtimes", default="torch,bf16,onnx,onnx-int8")
    parser.add_argument("--slices", default="1")
    parser.add_argument("--threads", default="2")
    args = parser.parse_args(argv)
    print(f"start: {load()}", flush=True)
    start, cpu = time.perf_counter(), os.times()
    steps = [
        [sys.executable, str(HERE / "bench_encoder_runtimes.py"), "--models", args.models, "--slices", args.slices,
         "--threads", args.threads, "--runtimes", args.runtimes],
        [sys.executable, str(HERE / "bench_decoder.py"), "--threads", "1"],
        [sys.executable, str(HERE / "bench_decoder.py"), "--threads", args.threads],
    ]
    for step in steps:
        code = subprocess.call(step)
        if code:
            return code
    done = os.times()
    children = (done.children_user - cpu.children_user) + (done.children_system - cpu.children_system)
    print(f"end: {load()}; whole table {time.perf_counter() - start:.0f} s wall, {children:.0f} CPU s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
