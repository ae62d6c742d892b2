"""The Model row of the Propagate section: SAM checkpoints of the weights cache.

``samfewshot weights list --json``, ``weights import PATH`` and ``weights verify`` run as child
processes through the section's JobMonitor (progress, Cancel), so hashing a checkpoint of several
GB never freezes Slicer. The checkpoint combo box lists only usable (present, verified)
checkpoints; each entry's tooltip shows its architecture, size, licence and status.
"""

import logging
import os

import qt

import slicer

from .module_panel import ModulePanel


class WeightsPanel(ModulePanel):
    """Lists, imports and verifies SAM checkpoints without blocking Slicer, in the Propagate
    section's JobMonitor (``widget.propagateMonitor``: one child at a time in that section)."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.rows = []  # CheckpointRow of every checkpoint of the last list
        self.listed = False  # the list was asked for at least once

    def setup(self) -> None:
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.verifyModelButton.connect("clicked(bool)", self.onVerifyModels)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.onRefreshModels)
        self.populateModels()

    @property
    def checkpoints(self) -> list:
        """Names of the usable checkpoints (what ``--checkpoint`` takes)."""
        return [row.name for row in self.rows if row.usable]

    def updateButtons(self, running: bool) -> None:
        """The buttons start child processes in the Propagate section: disabled while one runs."""
        for button in (self.ui.importModelButton, self.ui.verifyModelButton, self.ui.refreshModelsButton):
            button.enabled = not running

    def populateModels(self) -> None:
        """Fill the Model combo box with the usable checkpoints (tooltip: licence, size, status)."""
        combo = self.ui.modelComboBox
        parameterNode = self.widget.parameterNode()
        wasBlocked = combo.blockSignals(True)
        try:
            combo.clear()
            usable = [row for row in self.rows if row.usable]
            for index, row in enumerate(usable):
                combo.addItem(row.name, row.name)
                combo.setItemData(index, row.tooltip(), qt.Qt.ToolTipRole)
            if not usable:
                combo.addItem("(no checkpoint: use Import file...)", "")
            selected = parameterNode.checkpoint if parameterNode else ""
            index = combo.findData(selected)
            combo.currentIndex = index if index >= 0 else 0
        finally:
            combo.blockSignals(wasBlocked)
        checkpoints = self.checkpoints
        if parameterNode and checkpoints and parameterNode.checkpoint not in checkpoints:
            parameterNode.checkpoint = checkpoints[0]

    def startList(self) -> None:
        """List the checkpoints in the background (nothing happens while another job runs)."""
        monitor = self.widget.propagateMonitor
        if monitor.running:
            return
        self.listed = True
        monitor.start(self.logic.startWeightsList())

    def finish(self, job) -> None:
        """Read a finished weights job: the list fills the combo box; import and verify say what
        they did and list again."""
        if job.kind == "weights list":
            try:
                self.rows = self.logic.finishWeightsList(job)
                self.ui.modelComboBox.toolTip = "SAM checkpoint used by the sam, fewshot and meta engines and by atlas refinement."
                self.ui.statusLabel.text = f"{len(self.checkpoints)} usable SAM checkpoint(s)."
            except (RuntimeError, ValueError) as error:
                # Not fatal: the weightless engines still work; say why the list is empty.
                self.rows = []
                self.ui.modelComboBox.toolTip = f"SAM checkpoints could not be listed: {error}"
                self.ui.statusLabel.text = "SAM checkpoints could not be listed (see the Model tooltip)."
                logging.warning(f"SAMFewShot: SAM checkpoints could not be listed: {error}")
            self.populateModels()
            self.widget.populateEngines()
            return
        message = self.logic.finishWeightsCommand(job)
        self.ui.statusLabel.text = message
        self.startList()

    # Handlers ----------------------------------------------------------------------------------

    def onRefreshModels(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not list the SAM checkpoints."):
            self.startList()

    def onImportModel(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not import the checkpoint."):
            path = qt.QFileDialog.getOpenFileName(
                slicer.util.mainWindow(), "Import a SAM checkpoint", "", "PyTorch checkpoints (*.pth *.pt);;All files (*)"
            )
            if isinstance(path, (tuple, list)):  # (file name, selected filter) in some Qt bindings
                path = path[0] if path else ""
            if not path:
                return
            self.widget.propagateMonitor.start(self.logic.startCheckpointImport(os.fspath(path)))

    def onVerifyModels(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start the checkpoint verification."):
            self.widget.propagateMonitor.start(self.logic.startCheckpointVerify())
