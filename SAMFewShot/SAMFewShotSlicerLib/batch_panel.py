"""The Batch section of the SAMFewShot module.

Inputs: volumes of the scene (checkable list) or a folder. Model: an atlas bundle, a few-shot
head (``.sfs``), or the input volume and segmentation of the Propagate section as a reference
annotation. Run starts ``samfewshot batch ... --progress json`` as a child process (progress,
elapsed time, Cancel); the table shows every case's status, time and output or error as the
cases finish; Load results loads the finished cases' ``.seg.nrrd`` files.

Train a study model: the Propagate section's volume and segmentation (labelled) and the other
checked scene volumes (unlabelled) train an SFR study model (``samfewshot sfr train``) written to
the model path, which Run then applies as an atlas bundle; progress, elapsed time and Cancel as
for a batch; Resume continues a cancelled training from its checkpoint.
"""

import qt
import slicer

from SAMFewShotLib.atlas.bundle import bundle_engine
from SAMFewShotLib.slicer_support import batch_cases, commands, requirements

from .engine_choices import engineFamily
from .job_monitor import JobMonitor
from .module_panel import ModulePanel
from .study_model_logic import STUDY_MODEL_JOB
from .study_model_panel import StudyModelPanel

#: Batch panel choices (parameter node values, shown as is) -> batch model kinds.
BATCH_MODEL_CHOICES = {"atlas bundle": "atlas", "few-shot head": "head", "reference annotation": "reference"}
#: Where the batch inputs come from (parameter node values, shown as is).
BATCH_INPUT_CHOICES = ("scene volumes", "folder")
#: Columns of the case table.
TABLE_COLUMNS = ("Case", "Status", "Seconds", "Output or error")


class BatchPanel(StudyModelPanel, ModulePanel):
    """Widget side of the batch workflow (state in the module's parameter node, work in
    SAMFewShotLogic.batch)."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.table = batch_cases.CaseTable()
        self.caseVolumes = {}  # case id -> volume node ID of the last run's scene volumes
        self.outputFolder = ""  # output folder of the last run
        self.preparation = None  # BatchPreparation while its inputs are exported (one per timer tick)

    def setup(self) -> None:
        self.monitor = JobMonitor(
            self.logic.jobs, self.ui.batchProgressBar, self.ui.batchStatusLabel, self.ui.batchElapsedLabel,
            self.finish, self.widget.updateGuiFromParameterNode, onOutput=self.showNewCases,
        )
        for pathEdit, field in ((self.ui.batchInputFolderPathLineEdit, "batchInputFolder"),
                                (self.ui.batchModelPathLineEdit, "batchModel"),
                                (self.ui.batchOutputPathLineEdit, "batchOutputFolder")):
            pathEdit.connect("currentPathChanged(QString)", lambda path, field=field: self.onPathChanged(field, path))
        self.ui.batchVolumesSelector.connect("checkedNodesChanged()", self.onCheckedVolumesChanged)
        self.ui.batchRunButton.connect("clicked(bool)", self.onRun)
        self.ui.batchCancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.batchLoadResultsButton.connect("clicked(bool)", self.onLoadResults)
        self.ui.batchTable.setColumnCount(len(TABLE_COLUMNS))
        self.ui.batchTable.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        self.setupStudyModelRow()

    # GUI state ---------------------------------------------------------------------------------

    def updateGui(self, parameterNode) -> None:
        """Visibility of the input and model widgets, path edits and button states."""
        running = self.running
        self.ui.batchCancelButton.enabled = running
        self.ui.batchLoadResultsButton.enabled = bool(self.table.loadable())
        if parameterNode is None:
            self.ui.batchRunButton.enabled = False
            return
        fromScene = parameterNode.batchInputs == BATCH_INPUT_CHOICES[0]
        self.ui.batchVolumesSelector.visible = fromScene
        self.ui.batchInputFolderPathLineEdit.visible = not fromScene
        reference = BATCH_MODEL_CHOICES[parameterNode.batchModelKind] == "reference"
        self.ui.batchModelPathLineEdit.visible = not reference
        self.ui.batchReferenceLabel.visible = reference
        self.ui.batchReferenceLabel.text = self.referenceText(parameterNode)
        for pathEdit, value in ((self.ui.batchInputFolderPathLineEdit, parameterNode.batchInputFolder),
                                (self.ui.batchModelPathLineEdit, parameterNode.batchModel),
                                (self.ui.batchOutputPathLineEdit, parameterNode.batchOutputFolder)):
            if pathEdit.currentPath != value:
                wasBlocked = pathEdit.blockSignals(True)
                pathEdit.currentPath = value
                pathEdit.blockSignals(wasBlocked)
        problem = self.runProblem(parameterNode)
        self.ui.batchRunButton.enabled = problem is None and not running
        self.ui.batchRunButton.toolTip = problem or "Apply the model to every input in a background process."
        self.updateStudyModelGui(parameterNode, running, fromScene, BATCH_MODEL_CHOICES[parameterNode.batchModelKind])

    @staticmethod
    def referenceText(parameterNode) -> str:
        volume, segmentation = parameterNode.inputVolume, parameterNode.segmentationNode
        if volume is None or segmentation is None:
            return "Reference: select the input volume and its segmentation in the Propagate section."
        return (f"Reference: '{volume.GetName()}' with every segment of '{segmentation.GetName()}', completed on the "
                f"reference with the {parameterNode.engine} engine, then registered to each case.")

    def runProblem(self, parameterNode) -> str:
        """Why Run cannot start now (tooltip text), or None."""
        if parameterNode.batchInputs == BATCH_INPUT_CHOICES[0]:
            if not self.ui.batchVolumesSelector.checkedNodes():
                return "Check the volumes to process."
        elif not parameterNode.batchInputFolder:
            return "Choose the input folder."
        kind = BATCH_MODEL_CHOICES[parameterNode.batchModelKind]
        if kind == "reference":
            if parameterNode.inputVolume is None or parameterNode.segmentationNode is None:
                return "Select the reference volume and segmentation in the Propagate section."
        elif not parameterNode.batchModel:
            return "Choose the model file (atlas bundle .zip / manifest.json, or few-shot head .sfs)."
        engine = "fewshot" if kind == "head" else parameterNode.engine if kind == "reference" else None
        if engine is not None:
            try:
                need = self.widget.propagationPanel.engineNeeds(engine)
            except ValueError as error:
                return str(error)
            if need is not None:
                return f"{'A few-shot head' if kind == 'head' else 'The reference engine ' + engine} {need}."
        if not parameterNode.batchOutputFolder:
            return "Choose the output folder."
        return None

    def showNewCases(self, job) -> None:
        """Write the cases the running batch finished since the last poll into the table."""
        if job.kind == STUDY_MODEL_JOB:
            return
        for status in self.logic.batch.readCases(job):
            self.showCase(status)

    def showCase(self, status) -> None:
        row = self.table.row_index(status.case)
        if row >= self.ui.batchTable.rowCount:
            self.ui.batchTable.setRowCount(row + 1)
        for column, text in enumerate(status.cells()):
            item = qt.QTableWidgetItem(text)
            item.setToolTip(text)
            self.ui.batchTable.setItem(row, column, item)

    def showTable(self) -> None:
        self.ui.batchTable.setRowCount(0)
        for status in self.table.rows:
            self.showCase(status)

    def finish(self, job) -> None:
        """A finished batch: the whole table and its summary (raises the batch's error); a
        finished study model: its path."""
        if job.kind == STUDY_MODEL_JOB:
            bundle = self.logic.batch.finishStudyModel(job)
            self.ui.batchStatusLabel.text = f"Study model written to {bundle}; Run applies it to the checked volumes."
            return
        try:
            self.logic.batch.finish(job)
        finally:
            self.showTable()
        self.ui.batchStatusLabel.text = f"Batch finished: {self.table.summary()}. Outputs in {self.outputFolder}."

    # Handlers ----------------------------------------------------------------------------------

    def onPathChanged(self, field, path) -> None:
        parameterNode = self.widget.parameterNode()
        if parameterNode is None or self.widget.updatingGui:
            return
        with slicer.util.tryWithErrorDisplay("Could not select the path."):
            setattr(parameterNode, field, path or "")

    def onCheckedVolumesChanged(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not select the volumes."):
            self.widget.updateGuiFromParameterNode()

    def onRun(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start the batch.", waitCursor=True):
            parameterNode = self.widget.parameterNode()
            kind = BATCH_MODEL_CHOICES[parameterNode.batchModelKind]
            weighted = kind == "head" or (
                kind == "reference" and engineFamily(parameterNode.engine) in commands.WEIGHTED_ENGINES
            )
            monai = False
            if kind == "atlas":  # an RRL-MedSAM or SFR study-model bundle runs a torch (and MONAI) network
                torchBundle, monai = requirements.bundle_requirements(bundle_engine(parameterNode.batchModel))
                weighted = weighted or torchBundle
            if not self.widget.packagesPanel.setupPythonRequirements(
                sam=weighted, dist=bool(parameterNode.batchScheduler.strip()), sfr=monai
            ):
                return
            fromScene = parameterNode.batchInputs == BATCH_INPUT_CHOICES[0]
            self.preparation = self.logic.batch.prepare(
                parameterNode.batchOutputFolder,
                volumeNodes=self.ui.batchVolumesSelector.checkedNodes() if fromScene else (),
                inputFolder="" if fromScene else parameterNode.batchInputFolder,
                modelKind=kind, modelPath=parameterNode.batchModel,
                referenceVolume=parameterNode.inputVolume, referenceSegmentation=parameterNode.segmentationNode,
                scheduler=parameterNode.batchScheduler, checkpoint=parameterNode.checkpoint or None,
                engine=parameterNode.engine if kind == "reference" else None,
            )
            self.widget.updateGuiFromParameterNode()
            qt.QTimer.singleShot(0, self.onExportStep)

    @property
    def running(self) -> bool:
        """Whether the batch's inputs are being exported or its child runs."""
        return self.preparation is not None or (self.monitor is not None and self.monitor.running)

    def onExportStep(self) -> None:
        """Export the next input volume (one per timer tick: Slicer stays responsive, Cancel
        works), then start the child."""
        with slicer.util.tryWithErrorDisplay("Could not export the batch inputs."):
            preparation = self.preparation
            if preparation is None:  # cancelled meanwhile
                return
            try:
                if preparation.steps:
                    done = preparation.total - len(preparation.steps)
                    what = preparation.runNextStep()
                    self.ui.batchStatusLabel.text = f"Exported {what} ({done + 1} of {preparation.total})."
                    self.ui.batchProgressBar.value = int(100 * (done + 1) / max(1, preparation.total))
                    qt.QTimer.singleShot(0, self.onExportStep)
                    return
                self.preparation = None
                job = self.logic.batch.launch(preparation)
            except BaseException:
                self.preparation = None
                self.widget.updateGuiFromParameterNode()
                raise
            if job.kind != STUDY_MODEL_JOB:
                self.table = job.details["table"]
                self.caseVolumes = job.details["caseVolumes"]
                self.outputFolder = job.details["outputFolder"]
                self.showTable()
            self.monitor.start(job)

    def cleanup(self) -> None:
        if self.preparation is not None:
            self.preparation.discard()
            self.preparation = None
        super().cleanup()

    def onCancel(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not cancel.", waitCursor=True):
            if self.preparation is not None:
                self.preparation.discard()
                self.preparation = None
                self.ui.batchStatusLabel.text = "Batch cancelled while exporting its inputs; nothing was started."
                self.widget.updateGuiFromParameterNode()
                return
            training = self.monitor.job is not None and self.monitor.job.kind == STUDY_MODEL_JOB
            self.monitor.cancel()
            self.ui.batchStatusLabel.text = (
                "Training cancelled; its checkpoint is kept: check Resume to continue it." if training
                else f"Batch cancelled: {self.table.summary()}; finished cases are kept.")

    def onLoadResults(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not load the batch results.", waitCursor=True):
            nodes = self.logic.batch.loadResults(self.table, self.caseVolumes, self.outputFolder)
            self.ui.batchStatusLabel.text = f"Loaded {len(nodes)} segmentation(s)."
