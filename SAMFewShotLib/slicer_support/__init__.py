"""Pure helpers for the SAMFewShot 3D Slicer module (issue 4), unit-tested without Slicer.

The Slicer module stays a thin layer; what it needs that does not touch Slicer lives here:

- :mod:`.commands`: the ``samfewshot propagate`` and ``suggest`` argv lists and what an engine
  still needs (PyTorch, a checkpoint) before it can run; :func:`~.commands.base_command`.
- :mod:`.weights_commands`: ``weights list | import | verify`` argv lists and their output
  (checkpoint rows with licence and status).
- :mod:`.atlas_commands`: ``atlas info | apply | create`` argv lists and the bundle description.
- :mod:`.batch_commands`: the ``batch`` argv list, model kinds, scheduler addresses.
- :mod:`.batch_cases`: the batch's per-case JSON lines and the status table built from them.
- :mod:`.progress_lines`: parsing the child's JSON progress lines, the per-stage tracker and its
  status text, and reading the ``--report`` JSON.
- :mod:`.report_summary`: expected Dice and per-slice confidence of a propagation report.
- :mod:`.process_runner`: the child process, its reader threads and queue, polled from a
  ``qt.QTimer``; cancel kills the whole process tree.
- :mod:`.requirements`: the Python packages installed on first use (in sync with
  pyproject.toml) and what is missing.
- :mod:`.coordinates`: RAS (Slicer) <-> LPS (files), and Slicer's (k, j, i) array + IJKToRAS
  matrix <-> :class:`~SAMFewShotLib.volume.Volume`.
- :mod:`.slice_views`: which slice view (Red, Yellow, Green) pages along an annotated axis, slice
  positions as Slicer's slice offsets in mm, "next low-confidence slice".
- :mod:`.preview_parts`: a propagation split into drawn / propagated / low-confidence parts.
- :mod:`.first_use`: the install confirmation with sizes, the torch version check, the CPU time
  estimate of a SAM run.
- :mod:`.selection`: the (segmentation, segment) pair kept consistent (segment selector race).
- :mod:`.extension_description`: the Extensions Index description generated from CMakeLists.txt.

Nothing in this package imports slicer, qt or vtk; the numpy/SimpleITK-backed parts of
SAMFewShotLib it reuses (atlas bundle labels, batch scheduler rule) are imported inside the
functions that need them, so the module's GUI can be built before the first-use installation.
"""
