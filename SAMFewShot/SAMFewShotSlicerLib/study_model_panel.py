"""The "Train a study model" row of the Batch section (a part of :class:`~.batch_panel.BatchPanel`).

The Propagate section's volume and segmentation (labelled) and the other checked scene volumes
(unlabelled) train an SFR study model (``samfewshot sfr train``) written to the Batch model path;
Run then applies it as an atlas bundle. Progress, elapsed time and Cancel are the batch's;
Resume continues a cancelled training from its checkpoint.
"""

import qt
import slicer

#: What "Train a study model" does (its tooltip when it can run).
STUDY_MODEL_TOOLTIP = ("Train a fast 3D model of this study (SFR): the Propagate section's volume and segmentation "
                       "are labelled, the other checked volumes unlabelled; written to the model path (.zip), then "
                       "Run applies it.")


class StudyModelPanel:
    """Widgets and handlers of "Train a study model" (uses the panel's ``ui``, ``logic``,
    ``widget``, ``preparation`` and ``onExportStep``)."""

    def setupStudyModelRow(self) -> None:
        """The "Train a study model" button and its Resume check box, one row under the batch's
        widgets (made here, not in the .ui file)."""
        row = qt.QHBoxLayout()
        self.trainButton = qt.QPushButton("Train a study model")
        self.trainButton.toolTip = STUDY_MODEL_TOOLTIP
        self.resumeCheckBox = qt.QCheckBox("Resume")
        self.resumeCheckBox.checked = False
        self.resumeCheckBox.toolTip = "Continue the cancelled training of this model from its checkpoint."
        row.addWidget(self.trainButton)
        row.addWidget(self.resumeCheckBox)
        self.ui.batchCollapsibleButton.layout().addRow(row)  # batchFormLayout (a QFormLayout)
        self.trainButton.connect("clicked(bool)", self.onTrainStudyModel)

    def updateStudyModelGui(self, parameterNode, running: bool, fromScene: bool, modelKind: str) -> None:
        """Button states; ``fromScene``: the batch inputs are scene volumes; ``modelKind``: the
        batch model kind (``atlas``, ``head``, ``reference``)."""
        problem = self.studyModelProblem(parameterNode, fromScene, modelKind)
        self.trainButton.enabled = problem is None and not running
        self.trainButton.toolTip = problem or STUDY_MODEL_TOOLTIP
        self.resumeCheckBox.enabled = self.logic.batch.canResumeStudyModel(parameterNode.batchModel) and not running
        if not self.resumeCheckBox.enabled:
            self.resumeCheckBox.checked = False

    def studyModelProblem(self, parameterNode, fromScene: bool, modelKind: str):
        """Why "Train a study model" cannot start now (tooltip text), or None."""
        if not fromScene:
            return "Choose scene volumes as inputs: the checked volumes are the study."
        if parameterNode.inputVolume is None or parameterNode.segmentationNode is None:
            return "Select the labelled volume and its segmentation in the Propagate section."
        labelledId = parameterNode.inputVolume.GetID()
        if not [node for node in self.ui.batchVolumesSelector.checkedNodes() if node.GetID() != labelledId]:
            return "Check the study's unlabelled volumes."
        if modelKind != "atlas" or not parameterNode.batchModel:
            return "Choose 'atlas bundle' and the model path (.zip) the study model is written to."
        return None

    def onTrainStudyModel(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start training the study model.", waitCursor=True):
            parameterNode = self.widget.parameterNode()
            if not self.widget.packagesPanel.setupPythonRequirements(sam=True, sfr=True):  # torch and MONAI
                return
            self.preparation = self.logic.batch.prepareStudyModel(
                parameterNode.batchModel, parameterNode.inputVolume, parameterNode.segmentationNode,
                self.ui.batchVolumesSelector.checkedNodes(), resume=bool(self.resumeCheckBox.checked),
            )
            self.widget.updateGuiFromParameterNode()
            qt.QTimer.singleShot(0, self.onExportStep)
