"""ModulePanel: what every section of the SAMFewShot module's GUI shares.

A panel drives the widgets of one section of the module's .ui (``self.ui``), reads and writes
the module's parameter node (``self.widget.parameterNode()``) and runs its work through the
module's logic (``self.logic``). A panel that runs its own child processes has a JobMonitor
(``self.monitor``); Cancel stops its job, and the module's cleanup stops it quietly.
"""

import slicer


class ModulePanel:
    """Base of the module's panels.

    Args:
        widget: the SAMFewShotWidget (ui, logic, parameter node, requirement setup).
    """

    def __init__(self, widget) -> None:
        self.widget = widget
        self.ui = widget.ui
        self.logic = widget.logic
        self.monitor = None  # JobMonitor of the panel's own jobs (set in setup), or None

    @property
    def running(self) -> bool:
        """Whether the panel's own job is running."""
        return self.monitor is not None and self.monitor.running

    def cleanup(self) -> None:
        """Stop the panel's job without dialogs (module cleanup, scene close, reload)."""
        if self.monitor is not None:
            self.monitor.cancelQuietly()

    def onCancel(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not cancel.", waitCursor=True):
            self.monitor.cancel()
