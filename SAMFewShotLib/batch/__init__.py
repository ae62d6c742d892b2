"""Batch and cohort segmentation: one model applied to many volumes (``samfewshot batch``).

- ``inputs.py``: files, globs, folders and DICOM study folders expanded into cases with stable,
  unique case ids (each DICOM series is one case).
- ``models.py``: the MODEL (atlas bundle, few-shot head, or reference image + annotation) as a
  small picklable per-case segmenter, loaded once per worker process.
- ``case_task.py``: what happens to one case in a worker: resume check, read, segment, QC
  statistics, montage, atomic outputs, then the per-case record (``records.py``).
- ``runner.py`` (local process pool) and ``dask_runner.py`` (dask.distributed): run the cases,
  stream the results, retry a case lost with its worker once, cancel.
- ``qc.py``, ``montage.py``, ``report.py``: volumes in mL, connected components, flags,
  three-plane overlay montages, ``qc.csv`` and ``qc.html``.
- ``pipeline.py``: :func:`run_batch`, the whole batch as the command line runs it.
"""
