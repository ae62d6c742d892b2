"""``samfewshot meta-train``: meta-learn the ``meta`` engine's init (SSM-SAM, Algorithm 2).

    samfewshot meta-train LABELED_DIR -o INIT.pt --checkpoint C [--model-type T]
                          [--labels 1,2] [--held-out LABEL] [--axis axial|coronal|sagittal]
                          [--window auto|...] [--iterations N] [--tasks-per-step T] [--steps S]
                          [--shots K] [--queries Q] [--meta-lr LR] [--learning-rate ALPHA]
                          [--online-optimizer sgd|adam] [--seed N] [--device auto|cpu|cuda]
                          [--report PATH] [--progress bar|json|none]

LABELED_DIR: ``images/`` + ``labels/`` with the same file names, or ``NAME_image.EXT`` +
``NAME_labels.EXT`` pairs (see SAMFewShotLib/meta/labeled_dir.py). INIT.pt is written
atomically at the end, only on success; use it with
``samfewshot propagate ... --engine meta --checkpoint C --init INIT.pt`` (same checkpoint).

Leave-one-organ-out (the paper's protocol): ``--held-out LABEL`` trains on every other label and
records the held-out one in the init, for evaluating the init on the organ it never saw.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..errors import InputError
from ..files import write_json_atomic
from .arguments import (
    AXES,
    add_axis_argument,
    add_progress_argument,
    add_report_argument,
    add_sam_model_arguments,
    parse_label_values,
)
from .exit_codes import EXIT_OK
from .outputs import check_output_and_report


def add_meta_parser(subparsers) -> None:
    """Register ``samfewshot meta-train`` on ``subparsers`` (the top-level subparsers action)."""
    from ..meta.config import MetaConfig, MetaTrainingSettings

    config, settings = MetaConfig(), MetaTrainingSettings()
    p = subparsers.add_parser(
        "meta-train",
        help="meta-learn the meta engine's init (SSM-SAM) from labelled volumes",
        description="SSM-SAM's Algorithm 2: first-order meta-learning of the meta engine's starting point over "
        "tasks (one structure of one volume each) sampled from LABELED_DIR, T tasks per meta-step, AdamW with a "
        "cosine schedule.",
    )
    p.add_argument("labeled_dir", metavar="LABELED_DIR", help="images/ + labels/, or NAME_image.EXT + NAME_labels.EXT")
    p.add_argument("-o", "--output", required=True, metavar="INIT.pt", help="the init file to write")
    add_sam_model_arguments(
        p, checkpoint_required=True, checkpoint_help="SAM checkpoint path or name (the init belongs to it)"
    )
    p.add_argument("--labels", default=None, help="label values to train on, comma-separated (default: all)")
    p.add_argument("--held-out", type=int, default=None, metavar="LABEL",
                   help="leave-one-organ-out: train on every label but this one (recorded in the init)")
    add_axis_argument(p, auto=False, help="slice axis (numpy z, y, x order)")
    p.add_argument("--window", default="auto", help="intensity window: auto, percentile or a CT preset")
    p.add_argument("--iterations", type=int, default=settings.iterations, help="meta-steps N")
    p.add_argument("--tasks-per-step", type=int, default=settings.tasks_per_step, help="tasks (organs) T per meta-step")
    p.add_argument("--steps", type=int, default=config.steps, help="online sweeps S per episode (and per use)")
    p.add_argument("--shots", type=int, default=settings.shots, help="support slices K per episode")
    p.add_argument("--queries", type=int, default=settings.queries, help="query slices per episode")
    p.add_argument("--meta-lr", type=float, default=settings.meta_lr, help="AdamW step size (cosine-annealed)")
    p.add_argument("--learning-rate", type=float, default=config.learning_rate, help="online step size alpha")
    p.add_argument("--online-optimizer", choices=("sgd", "adam"), default=config.online_optimizer,
                   help="per-pair updates: sgd (the paper) or adam (deviation, see the README)")
    p.add_argument("--seed", type=int, default=0)
    add_report_argument(p, help="write a JSON report: seconds, iterations, losses, memory")
    add_progress_argument(p)
    p.set_defaults(func=cmd_meta_train)


def _check_output(path: str) -> None:
    """InputError unless the init file can be written at ``path`` (a file in a writable folder)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        problem = "is a folder" if target.is_dir() else f"needs a writable folder {folder}"
        raise InputError(f"Output {path} {problem}")


def cmd_meta_train(args: argparse.Namespace, progress, cancel) -> int:
    from ..memory import peak_gpu_mib, peak_rss_mib
    from ..meta.config import MetaConfig
    from ..meta.init_file import MetaInit, save_init
    from ..meta.labeled_dir import find_labeled_cases
    from ..meta.load import load_meta_model
    from ..meta.meta_learning import MetaTrainingSettings, meta_train
    from ..meta.tasks import read_cases, tasks_from_volumes

    start = time.perf_counter()
    labels = parse_label_values(args.labels)
    config = MetaConfig(
        steps=args.steps, learning_rate=args.learning_rate, online_optimizer=args.online_optimizer, seed=args.seed
    )
    settings = MetaTrainingSettings(
        iterations=args.iterations, tasks_per_step=args.tasks_per_step, shots=args.shots, queries=args.queries,
        meta_lr=args.meta_lr, seed=args.seed,
    )
    _check_output(args.output)
    check_output_and_report(args.output, args.report, [args.checkpoint])
    cases = find_labeled_cases(args.labeled_dir)
    volumes = read_cases(cases, progress=progress, cancel=cancel)
    tasks, notes = tasks_from_volumes(
        volumes, axis=AXES[args.axis], labels=labels, window=args.window, held_out=args.held_out
    )
    meta = load_meta_model(
        args.checkpoint, model_type=args.model_type, device=args.device, config=config, progress=progress, cancel=cancel
    )
    result = meta_train(meta.network, tasks, settings, progress=progress, cancel=cancel)
    summary = {
        "iterations": result.iterations,
        "seconds": round(result.seconds, 3),
        "tasks": result.tasks,
        "skipped": notes,
        "held_out": args.held_out,
        "settings": vars(settings).copy(),
        "query_loss_first": result.query_losses[0] if result.query_losses else None,
        "query_loss_last": result.query_losses[-1] if result.query_losses else None,
        "peak_rss_mib": peak_rss_mib(),
    }
    save_init(
        MetaInit(
            config=config,
            names=list(result.state),
            state=result.state,
            learning_rates=result.learning_rates,
            base_sha256=meta.loaded.sha256,
            base_name=meta.loaded.name,
            model_type=meta.loaded.model_type,
            architecture=meta.loaded.architecture.describe(),
            training=summary,
        ),
        args.output,
    )
    if args.report:
        gpu = peak_gpu_mib()
        write_json_atomic(
            args.report,
            dict(
                summary,
                output=args.output,
                checkpoint=args.checkpoint,
                seconds_total=time.perf_counter() - start,
                query_losses=result.query_losses,
                support_losses=result.support_losses,
                online_steps=config.steps,
                **({"peak_gpu_mib": gpu} if gpu is not None else {}),
            ),
        )
    print(
        f"Meta-learned init written to {args.output}: {result.iterations} iterations over {len(tasks)} task(s) "
        f"in {result.seconds:.1f} s; query loss {summary['query_loss_first']:.3f} -> {summary['query_loss_last']:.3f}"
    )
    return EXIT_OK
