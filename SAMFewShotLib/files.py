"""Writing result files: JSON written atomically (a temporary file, then a rename)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np


def json_safe(value):
    """Numpy scalars/arrays to Python, non-finite floats to None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str, payload: dict) -> None:
    """Write ``payload`` as indented JSON through a temporary file and a rename."""
    target = Path(path)
    temp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        temp.write_text(json.dumps(json_safe(payload), indent=2) + "\n")
        os.replace(temp, target)
    finally:
        if temp.exists():
            temp.unlink()
