"""The Model row of the Propagate section: SAM checkpoints of the weights cache.

``samfewshot weights list --json``, ``weights import PATH``, ``weights verify`` and ``weights
download NAME`` run as child processes through the section's JobMonitor (progress, Cancel), so
hashing or downloading a checkpoint of several GB never freezes Slicer. The checkpoint combo box
lists only usable (present, verified) checkpoints; each entry's tooltip shows its architecture,
size, licence and status. Download... offers every registry entry that is not there yet, and asks
(licence, size, address) before it starts. The row is enabled, and the list asked for, only once
the SAM engines' packages are installed (a new user never sees "could not be listed").
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
        self.downloadMenu = qt.QMenu(self.ui.downloadModelButton)
        self.ui.downloadModelButton.setMenu(self.downloadMenu)
        self.populateModels()

    @property
    def checkpoints(self) -> list:
        """Names of the usable checkpoints (what ``--checkpoint`` takes)."""
        return [row.name for row in self.rows if row.usable]

    def updateButtons(self, running: bool) -> None:
        """The buttons start child processes in the Propagate section: disabled while one runs,
        and until the SAM engines' packages are installed."""
        samReady = self.logic.packages.samReady()
        for button in (self.ui.importModelButton, self.ui.verifyModelButton, self.ui.refreshModelsButton):
            button.enabled = samReady and not running
        self.ui.downloadModelButton.enabled = samReady and not running and any(r.downloadable for r in self.rows)
        if not samReady:
            self.ui.modelComboBox.toolTip = "Install SAM support (Python packages section) first."

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
        self.populateDownloads()

    def populateDownloads(self) -> None:
        """One Download menu entry per registry checkpoint that is not there yet (name, size, licence)."""
        self.downloadMenu.clear()
        for row in self.rows:
            if row.downloadable:
                action = self.downloadMenu.addAction(row.tooltip())
                action.connect("triggered()", lambda row=row: self.onDownload(row))

    def startList(self) -> None:
        """List the checkpoints in the background (nothing happens while another job runs)."""
        monitor = self.widget.propagationPanel.monitor
        if monitor.running or not self.logic.packages.samReady():
            return
        self.listed = True
        monitor.start(self.logic.weights.startList())

    def finish(self, job) -> None:
        """Read a finished weights job: the list fills the combo box; import and verify say what
        they did and list again."""
        if job.kind == "weights list":
            try:
                self.rows = self.logic.weights.finishList(job)
                self.ui.modelComboBox.toolTip = "SAM checkpoint used by the sam, fewshot and meta engines and by atlas refinement."
                self.ui.statusLabel.text = f"{len(self.checkpoints)} usable SAM checkpoint(s)."
            except (RuntimeError, ValueError) as error:
                # Not fatal: the weightless engines still work; say why the list is empty.
                self.rows = []
                self.ui.modelComboBox.toolTip = f"SAM checkpoints could not be listed: {error}"
                self.ui.statusLabel.text = "SAM checkpoints could not be listed (see the Model tooltip)."
                logging.warning(f"SAMFewShot: SAM checkpoints could not be listed: {error}")
            self.populateModels()
            self.widget.propagationPanel.populateEngines()
            return
        message = self.logic.weights.finishCommand(job)
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
            self.widget.propagationPanel.monitor.start(self.logic.weights.startImport(os.fspath(path)))

    def onVerifyModels(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start the checkpoint verification."):
            self.widget.propagationPanel.monitor.start(self.logic.weights.startVerify())

    def onDownload(self, row) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start the download."):
            if not slicer.util.confirmOkCancelDisplay(row.download_question(), windowTitle="SAMFewShot: download a checkpoint"):
                return
            self.widget.propagationPanel.monitor.start(self.logic.weights.startDownload(row.name))
