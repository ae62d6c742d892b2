"""A whole batch: cases in, label maps, records and the QC report out (what ``samfewshot
batch`` runs once it has parsed its arguments)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..progress import Cancelled, CancelToken, Progress, no_progress
from .case_task import CaseResult, CaseTask
from .inputs import Case
from .models import CaseModel
from .qc import cohort_flags
from .records import output_paths
from .report import write_report
from .runner import available_cores, run_local


@dataclass
class BatchSummary:
    """The results of a batch, in case order, and the report files."""

    results: list[CaseResult]
    csv: Path
    html: Path

    def count(self, status: str) -> int:
        """How many cases have this status ("done", "skipped", "failed")."""
        return sum(r.status == status for r in self.results)


def check_outputs_are_not_inputs(cases: Sequence[Case], out_dir: Path, formats: tuple[str, ...]) -> None:
    """InputError when a case's output file would be one of the input files (inputs are never
    overwritten)."""
    inputs = {str(Path(f).resolve()) for case in cases for f in case.input_files()}
    for case in cases:
        for path in output_paths(out_dir, case.case_id, formats):
            if str(path.resolve()) in inputs:
                raise InputError(
                    f"Output {path} of case {case.case_id} would overwrite an input: choose another -o folder"
                )


def run_batch(
    cases: Sequence[Case],
    model: CaseModel,
    out_dir: str | Path,
    *,
    formats: tuple[str, ...] = ("seg.nrrd",),
    force: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> BatchSummary:
    """Segment every case with ``model``, write the outputs and the QC report into ``out_dir``.

    Args:
        cases: from :func:`~SAMFewShotLib.batch.inputs.expand_inputs`.
        model: from :func:`~SAMFewShotLib.batch.models.load_model` (or any :class:`CaseModel`).
        out_dir: output folder (created): ``<case>.seg.nrrd`` / ``<case>.nii.gz``,
            ``montages/``, ``records/``, ``logs/`` (failed cases), ``qc.csv``, ``qc.html``.
        formats: "seg.nrrd" and/or "nii.gz".
        force: recompute cases an earlier run finished.
        scheduler: None for the local process pool; ``local:N`` or ``tcp://HOST:PORT`` for dask.
        workers: local pool size (default: one per core, at most one per case to compute).
        on_result: called in this process with each case's result as soon as it is known.
        progress: ``progress("batch", finished cases, cases)``.
        cancel: stops the run (workers killed, finished cases kept); raises Cancelled.

    Returns:
        The summary; failed cases are in it, never raised.
    """
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"-o {folder}: is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    check_outputs_are_not_inputs(cases, folder, formats)
    task = CaseTask(model, str(folder.resolve()), tuple(formats), force, uuid.uuid4().hex)
    results: dict[str, CaseResult] = {}
    total = len(cases)

    def collect(result: CaseResult) -> None:
        if result.case in results:
            raise RuntimeError(f"case {result.case} was reported twice")
        results[result.case] = result
        if on_result is not None:
            on_result(result)
        progress("batch", len(results), total)

    progress("batch", 0, total)
    try:
        todo = []
        for case in cases:
            done = task.finished(case)
            if done is None:
                todo.append(case)
            else:
                collect(done)
        if todo and scheduler is not None:
            from .dask_runner import run_dask

            stream = run_dask(todo, task, scheduler=scheduler, gpu=model.uses_gpu, cancel=cancel)
        elif todo:
            count = workers or min(available_cores(), len(todo))
            stream = run_local(todo, task, workers=count, preload=model.preload, cancel=cancel)
        else:
            stream = iter(())
        for result in stream:
            collect(result)
    except (Cancelled, KeyboardInterrupt):
        _report(folder, cases, results)
        raise
    return BatchSummary([results[c.case_id] for c in cases], *_report(folder, cases, results))


def _report(folder: Path, cases: Sequence[Case], results: dict[str, CaseResult]) -> tuple[Path, Path]:
    ordered = [results[c.case_id] for c in cases if c.case_id in results]
    flags = cohort_flags({r.case: r.labels for r in ordered if r.status != "failed"})
    return write_report(folder, ordered, flags)
