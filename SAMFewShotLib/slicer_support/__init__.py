"""Pure helpers for the SAMFewShot 3D Slicer module (issue 4), unit-tested without Slicer.

The Slicer module stays a thin layer; what it needs that does not touch Slicer lives here:

- :mod:`.commands`: the ``samfewshot`` argv lists the module runs (``propagate``, ``suggest``,
  ``weights list``) and the tooltip saying why an engine cannot run yet.
- :mod:`.progress_lines`: parsing the child's JSON progress lines, the per-stage tracker and its
  status text, and reading the ``--report`` JSON.
- :mod:`.process_runner`: the child process, its reader threads and queue, polled from a
  ``qt.QTimer``; cancel kills the whole process tree.
- :mod:`.coordinates`: RAS (Slicer) <-> LPS (files), and Slicer's (k, j, i) array + IJKToRAS
  matrix <-> :class:`~SAMFewShotLib.volume.Volume`.

Nothing in this package imports slicer, qt or vtk.
"""
