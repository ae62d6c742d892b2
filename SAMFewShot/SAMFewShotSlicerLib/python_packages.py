"""First-use installation of the Python packages the SAMFewShot module runs with.

As SlicerTotalSegmentator does: torch and torchvision come from the PyTorch extension
(``PyTorchUtilsLogic().installTorch``, which asks before it downloads); everything else is
installed with ``slicer.util.pip_install`` and a constraints file pinning Slicer's own SimpleITK,
numpy (and torch), so none of them is ever replaced. Offline, the error says which wheels to
download elsewhere. The requirement lists and helpers are in
``SAMFewShotLib.slicer_support.requirements`` and ``first_use``; the GUI asks the user once
(first_use_flow) before calling :meth:`PythonPackages.installPythonRequirements`, which then
tells the PyTorch extension not to ask again. An installed torch is checked against the version
the SAM engines need (``torch.load(..., mmap=)`` needs 2.1).
"""

import importlib
import importlib.util
import logging
import os
import shutil
import tempfile

import slicer

from SAMFewShotLib.slicer_support import first_use, requirements


class PythonPackages:
    """What is missing and how it is installed (``logic.packages``; never opens dialogs: the
    PyTorch extension's own confirmation is asked for only when ``askTorchConfirmation``)."""

    def __init__(self) -> None:
        self._samReady = None  # samReady's remembered answer

    @staticmethod
    def torchAvailable() -> bool:
        """Whether PyTorch is installed in Slicer's Python. Cheap (called on every GUI update):
        torch is not imported into Slicer (PyTorchUtilsLogic.torchInstalled would import it)."""
        return importlib.util.find_spec("torch") is not None

    @staticmethod
    def torchVersion():
        """The installed torch version string (importlib.metadata: torch is not imported), or None."""
        import importlib.metadata

        try:
            return importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            return None

    def torchProblem(self):
        """Why torch cannot run the SAM engines (missing or too old), or None."""
        return first_use.torch_version_problem(self.torchVersion())

    def samReady(self, refresh: bool = False) -> bool:
        """Whether the SAM engines' packages are there and torch is recent enough; remembered
        (the GUI asks on every refresh) until ``refresh`` or an installation."""
        if refresh or self._samReady is None:
            self._samReady = self.torchProblem() is None and not self.missingPythonRequirements(sam=True)
        return self._samReady

    @staticmethod
    def pythonRequirements(sam: bool = False, dist: bool = False, sfr: bool = False) -> list:
        """Requirement strings of the weightless engines, plus the SAM engines' (``sam``),
        dask.distributed's (``dist``: a batch on a ``tcp://`` scheduler) and MONAI (``sfr``:
        training a study model)."""
        return (list(requirements.PYTHON_REQUIREMENTS) + (list(requirements.SAM_PYTHON_REQUIREMENTS) if sam else [])
                + (list(requirements.DIST_PYTHON_REQUIREMENTS) if dist else [])
                + (list(requirements.SFR_PYTHON_REQUIREMENTS) if sfr else []))

    def missingPythonRequirements(self, sam: bool = False, dist: bool = False, sfr: bool = False) -> list:
        """Requirements (pip strings) of :meth:`pythonRequirements` that are not satisfied."""
        return requirements.missing_requirements(self.pythonRequirements(sam=sam, dist=dist, sfr=sfr))

    def installPythonRequirements(
        self, sam: bool = False, dist: bool = False, askTorchConfirmation: bool = False, sfr: bool = False
    ) -> None:
        """Install what :meth:`missingPythonRequirements` lists (the caller asked the user first).

        Raises:
            RuntimeError: the PyTorch extension is missing, torch is older than the SAM engines
                need, a pinned package is too old, or pip failed (the message says what to do offline).
        """
        self._samReady = None  # asked again after the installation
        if sam and not self.torchAvailable():
            self.installTorch(askConfirmation=askTorchConfirmation)
        if sam:
            problem = self.torchProblem()
            if problem is not None:
                raise RuntimeError(problem)
        missing = self.missingPythonRequirements(sam=sam, dist=dist, sfr=sfr)
        if not missing:
            return
        conflicts = requirements.pinned_conflicts(missing)
        if conflicts:
            raise RuntimeError(
                f"SAMFewShot needs {', '.join(conflicts)}, but the installed version comes with Slicer and is not "
                "replaced (Slicer depends on it). Use a more recent Slicer."
            )
        constraints = requirements.pinned_package_constraints()
        folder = tempfile.mkdtemp(prefix="SAMFewShot-pip-", dir=slicer.app.temporaryPath)
        try:
            constraintsPath = os.path.join(folder, "constraints.txt")
            with open(constraintsPath, "w", encoding="utf-8") as constraintsFile:
                constraintsFile.write("\n".join(constraints) + "\n")
            logging.info(f"SAMFewShot: installing {missing} (constraints: {constraints})")
            try:
                slicer.util.pip_install(["-c", constraintsPath, *missing])
            except Exception as error:
                raise RuntimeError(
                    requirements.offline_install_instructions(missing) + f"\n\nDetails: {error}"
                ) from error
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        importlib.invalidate_caches()
        stillMissing = self.missingPythonRequirements(sam=sam, dist=dist, sfr=sfr)
        if stillMissing:
            raise RuntimeError(
                f"These packages are still missing after installation: {', '.join(stillMissing)}. "
                "Restart Slicer and try again."
            )

    @staticmethod
    def installTorch(askConfirmation: bool = True) -> None:
        """PyTorch through the PyTorch extension (it asks before downloading when askConfirmation)."""
        try:
            import PyTorchUtils
        except ImportError:
            raise RuntimeError(
                "The SAM engines need PyTorch, which SAMFewShot installs through the PyTorch extension. "
                "Install the 'PyTorch' extension from the Extensions Manager, restart Slicer and try again."
            ) from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if torchLogic.torchInstalled():
            return
        torch = torchLogic.installTorch(
            askConfirmation=askConfirmation,
            torchVersionRequirement=requirements.TORCH_VERSION_REQUIREMENT,
            torchvisionVersionRequirement=requirements.TORCHVISION_VERSION_REQUIREMENT,
        )
        if torch is None:
            raise ValueError("PyTorch was not installed (cancelled); the SAM engines need it")
