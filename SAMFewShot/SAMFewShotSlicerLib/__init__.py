"""The Slicer side of the SAMFewShot module: its panels and logic, beside SAMFewShot.py.

``SAMFewShotLib`` (the backend) never imports slicer, qt or vtk; this package is the part of the
module that does. Slicer loads every ``.py`` file of a scripted-module folder as a module, so the
module's own helpers live in a package (the convention of DICOMLib or MONAIAuto3DSegLib),
imported by SAMFewShot.py:

- :mod:`.propagation_logic`: propagate and suggest jobs, the preview and Accept of a propagation.
- :mod:`.weights_logic`: ``samfewshot weights list | import | verify`` jobs.
- :mod:`.child_jobs`: ``samfewshot`` child processes of the logic (start, poll, wait, cancel,
  read the result), :class:`~.child_jobs.SAMFewShotJob`.
- :mod:`.scene_exchange`: the scene <-> files of the child (volumes and segments exported with
  their geometry, results read back on the volume's grid, preview segmentations).
- :mod:`.python_packages`: the first-use installation of the Python packages (asks first; torch
  through the PyTorch extension; Slicer's SimpleITK and numpy never replaced).
- :mod:`.module_panel`: ModulePanel, the base of the panels (ui, logic, parameter node, own job).
- :mod:`.job_monitor`: JobMonitor, one running child polled by a ``qt.QTimer`` into a progress
  bar, a status and an elapsed time, with Cancel (never blocks Slicer).
- :mod:`.weights_panel`: the Model row (SAM checkpoints: list, Import file..., Verify).
- :mod:`.atlas_logic`, :mod:`.atlas_panel`: load an atlas bundle, apply it to the current volume
  as a preview, Accept adds its segments (names, colours, terminology) in one undoable step.
- :mod:`.batch_logic`, :mod:`.batch_panel`: ``samfewshot batch`` over scene volumes or a folder,
  per-case status table, Cancel, Load results.

Logic classes and mixins never touch widgets or open dialogs; the ``*Panel`` classes wrap every
handler in ``slicer.util.tryWithErrorDisplay``. Pure helpers (command lines, output parsing) are in
``SAMFewShotLib.slicer_support`` and are tested without Slicer.
"""
