"""First use, as SlicerTotalSegmentator does it: one confirmation listing what will be installed
and its size, torch checked against the version the SAM engines need (installed or not), and the
SAM row (Model) enabled only once the packages are there.

:func:`ensurePythonRequirements` is the one place that asks; the module's panels and the
Propagate effect call it before a job. The PyTorch extension is then told not to ask again.
"""

import slicer

from SAMFewShotLib.slicer_support import first_use

from .module_panel import ModulePanel


def ensurePythonRequirements(
    packages, sam: bool = False, dist: bool = False, showStatus=None, sfr: bool = False
) -> bool:
    """Install what is missing after one confirmation; False when the user declined.

    Args:
        packages: the logic's PythonPackages.
        sam: the SAM engines' packages and torch too. dist: dask.distributed too. sfr: MONAI too
            (training a study model; with ``sam`` for torch).
        showStatus: called with a one-line status text (optional).

    Raises:
        RuntimeError: torch is installed but older than the SAM engines need, or the
            installation failed (the message says what to do, also offline).
    """
    say = showStatus or (lambda text: None)
    missing = packages.missingPythonRequirements(sam=sam, dist=dist, sfr=sfr)
    needTorch = sam and not packages.torchAvailable()
    if sam and not needTorch:
        problem = packages.torchProblem()
        if problem is not None:
            raise RuntimeError(problem)
    if not missing and not needTorch:
        return True
    if not slicer.util.confirmOkCancelDisplay(first_use.confirmation_text(missing, needTorch),
                                              windowTitle="SAMFewShot: install Python packages"):
        say(
            "Python packages were not installed: "
            + ", ".join(first_use.needs_of(missing) + (["torch"] if needTorch else []))
        )
        return False
    say("Installing Python packages (this may take several minutes)...")
    slicer.app.processEvents()
    packages.installPythonRequirements(sam=sam, dist=dist, askTorchConfirmation=False, sfr=sfr)
    say("Python packages installed.")
    return True


class PackagesPanel(ModulePanel):
    """The Python packages section: what is missing, the two install buttons."""

    def setup(self) -> None:
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.installSamSupportButton.connect("clicked(bool)", self.onInstallSamSupport)

    def setupPythonRequirements(self, sam: bool = False, dist: bool = False, sfr: bool = False) -> bool:
        """:func:`ensurePythonRequirements` for the module, then the GUI follows what changed."""
        installedBefore = self.logic.packages.samReady()
        done = ensurePythonRequirements(self.logic.packages, sam=sam, dist=dist, showStatus=self.showStatus, sfr=sfr)
        if done:
            self.updateStatus()
            self.widget.propagationPanel.populateEngines()
            if sam and not installedBefore and self.logic.packages.samReady():
                self.widget.weightsPanel.startList()  # listed only once the packages are there
            self.widget.updateGuiFromParameterNode()
        return done

    def showStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text

    def updateStatus(self) -> None:
        """Say what is missing; the SAM row follows whether the SAM engines can run."""
        packages = self.logic.packages
        packages.samReady(refresh=True)  # also picks up a torch installed with the PyTorch module meanwhile
        missing = packages.missingPythonRequirements(sam=False)
        samMissing = [r for r in packages.missingPythonRequirements(sam=True) if r not in missing]
        torchProblem = packages.torchProblem()
        lines = [
            "Engines without weights, atlas, batch: "
            + ("ready." if not missing else "missing " + ", ".join(missing) + ".")
        ]
        samNeeds = list(samMissing) + ([torchProblem] if torchProblem else [])
        samText = "ready." if not samNeeds else "missing " + "; ".join(samNeeds) + "."
        lines.append("SAM engines (sam, fewshot, meta): " + samText)
        self.ui.dependenciesStatusLabel.text = "\n".join(lines)

    def onInstallDependencies(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not install the Python packages.", waitCursor=True):
            if self.setupPythonRequirements(sam=False):
                self.ui.statusLabel.text = "All Python packages of the weightless engines are installed."

    def onInstallSamSupport(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not install SAM support.", waitCursor=True):
            self.setupPythonRequirements(sam=True)
