"""Batch throughput: cases per minute one by one, with the local process pool, and on dask.

Not collected by pytest. The cohort: the abdominal CT of ``../shared/data/abdomen_ct`` warped by
N known smooth random deformations (``atlas.deformation.deform_case``), each with its own
origin. The model: an atlas bundle made of the undeformed CT and its full TotalSegmentator
labels (engine ``registration``), so every case is one 3D elastix registration (default
``register_atlas`` settings unless ``--iterations`` is given) and one label warp. Every mode
runs the command line in fresh processes, as a user would, computing every case into a new
folder; it is timed from start to exit, start-up included (wall time, and the CPU time of the
processes it started, :class:`CpuMeter`, which other users of a shared machine do not inflate):

- loop: ``samfewshot atlas apply CASE BUNDLE -o OUT`` once per case, in sequence (what one does
  without ``batch``: every case pays the process start and the elastix load);
- serial: ``batch`` with one worker process (cases in sequence; elastix gets every core);
- pool: ``batch`` with one worker per core (the default; library threads split between them);
- dask: ``batch --scheduler local:N`` (LocalCluster on 127.0.0.1, N single-threaded workers),
  cluster start-up included.

    .venv/bin/python benchmarks/bench_batch.py --cases 6 [--workers 2] [--iterations 100] [--repeat 2]
        [--modes loop,serial,pool,dask] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "abdomen_ct"


def make_cohort(folder: Path, cases: int, displacement_mm: float, parameters: dict | None) -> Path:
    """Write the deformed cases into ``folder / "cases"`` and the bundle; return the bundle."""
    from SAMFewShotLib.atlas.bundle import write_bundle
    from SAMFewShotLib.atlas.deformation import deform_case
    from SAMFewShotLib.volume_io import read_labels, read_volume, write_volume

    image = read_volume(DATA / "image.nii.gz")
    labels = read_labels(DATA / "reference_labels.nii.gz")
    (folder / "cases").mkdir(parents=True)
    for seed in range(cases):
        warped, _ = deform_case(image, labels, displacement_mm, seed=seed)
        write_volume(replace(warped, origin=tuple(o + 2.0 * seed for o in warped.origin)), folder / "cases" / f"case{seed:02d}.nii.gz")
    return write_bundle(folder / "abdomen.zip", name="abdomen CT", atlases=[(image, labels)], parameters=parameters)


class CpuMeter:
    """CPU seconds (user + system) of every process started under this one while it runs.

    The processes are polled every ``interval`` seconds (their own times, not their children's,
    so nothing is counted twice); what a process spends after the last poll before it exits is
    missed (at most ``interval`` per process). Polling is needed because the local pool's fork
    server is not reaped by the batch process, so its workers never reach ``RUSAGE_CHILDREN``.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self._seen: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            for process in me.children(recursive=True):
                try:
                    times = process.cpu_times()
                    self._seen[(process.pid, process.create_time())] = times.user + times.system
                except psutil.Error:
                    pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "CpuMeter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self._seen.values())


def samfewshot(*args: str) -> None:
    """Run ``samfewshot ARGS...`` in a fresh process (as a user would); raise if it fails."""
    subprocess.run([sys.executable, "-m", "SAMFewShotLib", *args, "--progress", "none"], check=True, stdout=subprocess.DEVNULL)


def timed(label: str, cases: int, run) -> dict:
    load_before, start = os.getloadavg()[0], time.perf_counter()
    with CpuMeter() as meter:
        run()
    seconds, cpu = time.perf_counter() - start, meter.seconds
    row = {"mode": label, "seconds": seconds, "cpu_seconds": cpu, "cases": cases,
           "cases_per_minute": 60 * cases / seconds, "load_before": load_before, "load_after": os.getloadavg()[0]}
    print(f"{label:8s} {seconds:7.1f} s wall {row['cases_per_minute']:6.2f} cases/min  {cpu:7.1f} s CPU  "
          f"(1-min load average {load_before:.1f} -> {row['load_after']:.1f})", flush=True)
    return row


def mean(rows: list[dict], mode: str, key: str) -> float:
    values = [row[key] for row in rows if row["mode"] == mode]
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2, help="pool workers and dask workers")
    parser.add_argument("--displacement", type=float, default=10.0, help="largest deformation, mm")
    parser.add_argument("--iterations", type=int, default=None, help="affine and B-spline iterations (default: register_atlas's)")
    parser.add_argument("--modes", default="loop,serial,pool,dask")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every mode, interleaved")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is absent: this benchmark needs the abdomen CT (see ../shared/data/README.md)")

    parameters = None if args.iterations is None else {"affine_iterations": args.iterations, "bspline_iterations": args.iterations}
    rows = []
    with tempfile.TemporaryDirectory(prefix="samfewshot-bench-batch-") as temp:
        folder = Path(temp)
        bundle = str(make_cohort(folder, args.cases, args.displacement, parameters))
        cases = sorted((folder / "cases").iterdir())
        cohort = str(folder / "cases")
        print(f"{len(cases)} cases of {DATA.name} (122 x 101 x 112, 3 mm), {len(os.sched_getaffinity(0))} cores, "
              f"registration {parameters or 'defaults'}", flush=True)

        def loop(out: Path) -> None:
            out.mkdir()
            for case in cases:
                samfewshot("atlas", "apply", str(case), bundle, "-o", str(out / case.name.replace(".nii.gz", ".seg.nrrd")))

        modes = {
            "loop": loop,
            "serial": lambda out: samfewshot("batch", cohort, "--model", bundle, "-o", str(out), "--workers", "1"),
            "pool": lambda out: samfewshot("batch", cohort, "--model", bundle, "-o", str(out), "--workers", str(args.workers)),
            "dask": lambda out: samfewshot("batch", cohort, "--model", bundle, "-o", str(out), "--scheduler", f"local:{args.workers}"),
        }
        for repeat in range(args.repeat):
            for name in args.modes.split(","):
                rows.append(timed(name, len(cases), lambda: modes[name](folder / f"{name}{repeat}")))
    done = {row["mode"] for row in rows}
    for baseline in ("loop", "serial"):
        if {baseline, "pool"} <= done:
            ratio = mean(rows, baseline, "seconds") / mean(rows, "pool", "seconds")
            print(f"pool vs {baseline}: {ratio:.2f}x the throughput (mean wall time over {args.repeat} runs)")
    if {"pool", "dask"} <= done:
        wall = mean(rows, "dask", "seconds") / mean(rows, "pool", "seconds") - 1
        cpu = mean(rows, "dask", "cpu_seconds") / mean(rows, "pool", "cpu_seconds") - 1
        print(f"dask vs the pool: {100 * wall:+.1f} % wall time, {100 * cpu:+.1f} % CPU time")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "argv": sys.argv[1:]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
