"""Where the SAMFewShotLib package is, defined once for the module, its effect and its children.

Once the extension is built and installed, CMake copies SAMFewShotLib next to SAMFewShot.py; in
the source tree it is one level up. Importing this module puts that folder on ``sys.path`` (so
``import SAMFewShotLib`` works inside Slicer); the child processes get it first on PYTHONPATH.
"""

import os
import sys
from typing import Optional

#: The SAMFewShot module folder (SAMFewShot.py, Resources/, SegmentEditorPropagate/).
MODULE_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _samFewShotLibParentFolder() -> Optional[str]:
    for folder in (MODULE_FOLDER, os.path.dirname(MODULE_FOLDER)):
        if os.path.isfile(os.path.join(folder, "SAMFewShotLib", "__init__.py")):
            return folder
    return None  # then it must be pip-installed (samfewshot)


#: The folder holding the SAMFewShotLib package (None when it is pip-installed instead).
SAMFEWSHOTLIB_PARENT_FOLDER = _samFewShotLibParentFolder()
if SAMFEWSHOTLIB_PARENT_FOLDER and SAMFEWSHOTLIB_PARENT_FOLDER not in sys.path:
    sys.path.append(SAMFEWSHOTLIB_PARENT_FOLDER)
