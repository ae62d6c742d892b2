"""The Slicer side of the SAMFewShot module: its panels and logic parts, beside SAMFewShot.py.

``SAMFewShotLib`` (the backend) never imports slicer, qt or vtk; this package is the part of the
module that does. Slicer loads every ``.py`` file of a scripted-module folder as a module, so the
module's own helpers live in a package (the convention of DICOMLib or MONAIAuto3DSegLib),
imported by SAMFewShot.py and by the Propagate effect (../SegmentEditorPropagate/):

Logic parts (take nodes and plain values, never touch widgets or open dialogs; composed by
SAMFewShotLogic as ``logic.<part>``):

- :mod:`.child_jobs`: ``jobs``, the ``samfewshot`` child processes (start, poll, wait, cancel,
  read the result), :class:`~.child_jobs.SAMFewShotJob`.
- :mod:`.scene_exchange`: ``scene``, volumes and segments to and from the child's files
  (uncompressed export, grid from the node, results read back once), preview segmentations.
- :mod:`.propagation_logic`: ``propagation``, propagate and suggest jobs, the preview of drawn /
  propagated / low-confidence parts.
- :mod:`.weights_logic`: ``weights``, ``samfewshot weights list | import | verify | download``.
- :mod:`.python_packages`: ``packages``, the first-use installation (torch through the PyTorch
  extension, its version checked; Slicer's SimpleITK and numpy never replaced).
- :mod:`.atlas_logic`, :mod:`.batch_logic`: ``atlas`` and ``batch``.

GUI parts (every handler wrapped in ``slicer.util.tryWithErrorDisplay``):

- :mod:`.module_panel`: ModulePanel, the base of the panels; :mod:`.job_monitor`: JobMonitor, one
  running child polled by a ``qt.QTimer`` (progress, status, elapsed time, Cancel).
- :mod:`.propagation_panel`, :mod:`.preview_panel`, :mod:`.weights_panel`, :mod:`.atlas_panel`,
  :mod:`.batch_panel`, :mod:`.packages_panel`: the sections of the module's .ui.
- :mod:`.editor_bridge`: writing a preview through a Segment Editor effect (masking, undo) and
  showing a slice in the view of its axis; :mod:`.sam_on_cpu`: the CPU time question.
- :mod:`.engine_choices`: the engines, axes and devices offered; :mod:`.lib_folder`: where
  SAMFewShotLib is (defined once); :mod:`.heavy_self_test`: the opt-in part of the self-test.

Pure helpers (command lines, output parsing, slice views, preview parts, first-use sizes and
estimates) are in ``SAMFewShotLib.slicer_support`` and are tested without Slicer.
"""
