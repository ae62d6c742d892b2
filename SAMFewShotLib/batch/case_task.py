"""One case, start to finish, as a worker runs it.

:class:`CaseTask` is the picklable per-case function both runners call: skip the case when its
record says it is done (:mod:`.records`), else read the image, segment it, check that the labels
lie on the image's grid, compute the QC statistics, write the montage and the label maps
(each atomically: temporary file + rename), and write the record last. Any exception becomes
a ``failed`` :class:`CaseResult` (traceback in ``DIR/logs/<case>.log``): one case never stops
the others. Inputs are only read.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..files import write_text_atomic
from ..volume_io import write_labels
from .inputs import Case, input_signature, read_case_image
from .models import CaseModel
from .montage import write_montage
from .qc import LabelStats, label_stats
from .records import completed_record, output_paths, write_record

STATUSES = ("done", "failed", "skipped")


@dataclass(frozen=True)
class CaseResult:
    """What became of one case.

    Attributes:
        case: the case id.
        status: "done" (computed now), "failed" or "skipped" (already done before this run).
        seconds: wall time spent on the case in this run.
        outputs: absolute paths of the label maps (empty when failed).
        error: one line when failed, else None.
        labels: QC statistics per label (from the record when skipped).
        montage: absolute path of the montage PNG, when there is one.
        compute_seconds: seconds the segmentation took when it was computed (this run or the
            earlier one a skipped case comes from).
    """

    case: str
    status: str
    seconds: float
    outputs: tuple[str, ...] = ()
    error: str | None = None
    labels: tuple[LabelStats, ...] = field(default_factory=tuple)
    montage: str | None = None
    compute_seconds: float | None = None

    def json_line(self) -> dict:
        """The per-case progress line of the command-line contract."""
        return {
            "case": self.case,
            "status": self.status,
            "seconds": round(float(self.seconds), 3),
            "output": self.outputs[0] if self.outputs else None,
            "error": self.error,
        }


def one_line(error: BaseException) -> str:
    """The first non-empty line of an exception message, prefixed by its type when the
    message is not a ValueError's (those already name the problem)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if isinstance(error, (ValueError, OSError)) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass(frozen=True)
class CaseTask:
    """The per-case function: ``task(case) -> CaseResult``; never raises for a case's failure.

    Attributes:
        model: the per-case segmenter.
        out_dir: the output folder (label maps, ``montages/``, ``records/``, ``logs/``).
        formats: label map formats to write ("seg.nrrd", "nii.gz").
        force: recompute cases already done by an earlier run.
        run_id: this run's id; a record carrying it was written by an earlier attempt of this
            run (a worker lost after writing), so the case is done, not recomputed.
    """

    model: CaseModel
    out_dir: str
    formats: tuple[str, ...] = ("seg.nrrd",)
    force: bool = False
    run_id: str = ""

    def __call__(self, case: Case) -> CaseResult:
        start = time.perf_counter()
        try:
            return self._run(case, start)
        except Exception as error:  # one case's failure must not stop the batch
            self._log_failure(case, error)
            return CaseResult(case.case_id, "failed", time.perf_counter() - start, error=one_line(error))

    def finished(self, case: Case, signature: list[dict] | None = None) -> CaseResult | None:
        """The case's result when it need not be computed: "skipped" when an earlier run did it
        (and not ``force``), "done" when an earlier attempt of this run did; else None.
        ``signature``: the case's :func:`~.inputs.input_signature` when already taken."""
        start = time.perf_counter()
        signature = input_signature(case) if signature is None else signature
        record = completed_record(self.out_dir, case.case_id, signature, self.model.digest, self.formats)
        if record is None or (self.force and record.get("run_id") != self.run_id):
            return None
        status = "done" if record.get("run_id") == self.run_id else "skipped"
        return self._result(case, status, time.perf_counter() - start, record)

    def _run(self, case: Case, start: float) -> CaseResult:
        signature = input_signature(case)  # before reading: a later change of the inputs is not recorded as done
        done = self.finished(case, signature)
        if done is not None:
            return done
        out_dir = Path(self.out_dir)
        image = read_case_image(case)
        labels = self.model.segment(image)
        image.require_same_grid(labels.volume, f"label map the model returned for case {case.case_id}")
        compute_seconds = time.perf_counter() - start
        stats = label_stats(labels)
        montage = write_montage(image, labels, out_dir / "montages" / f"{case.case_id}.png")
        outputs = output_paths(out_dir, case.case_id, self.formats)
        for path in outputs:
            write_labels(labels, path)
        record = {
            "run_id": self.run_id,
            "inputs": signature,
            "model": self.model.digest,
            "outputs": [p.name for p in outputs],
            "montage": montage.relative_to(out_dir).as_posix(),
            "labels": [s.as_dict() for s in stats],
            "compute_seconds": compute_seconds,
        }
        write_record(out_dir, case.case_id, record)
        log = out_dir / "logs" / f"{case.case_id}.log"
        log.unlink(missing_ok=True)
        return self._result(case, "done", time.perf_counter() - start, record)

    def _result(self, case: Case, status: str, seconds: float, record: dict) -> CaseResult:
        out_dir = Path(self.out_dir).resolve()
        return CaseResult(
            case=case.case_id,
            status=status,
            seconds=seconds,
            outputs=tuple(str(p) for p in output_paths(out_dir, case.case_id, self.formats)),
            labels=tuple(LabelStats.from_dict(s) for s in record.get("labels", [])),
            montage=str(out_dir / record["montage"]) if record.get("montage") else None,
            compute_seconds=record.get("compute_seconds"),
        )

    def _log_failure(self, case: Case, error: BaseException) -> None:
        log = Path(self.out_dir) / "logs" / f"{case.case_id}.log"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            lines = traceback.format_exception(type(error), error, error.__traceback__)
            write_text_atomic(log, f"case {case.case_id} ({case.path}) failed:\n" + "".join(lines))
        except OSError:
            pass
