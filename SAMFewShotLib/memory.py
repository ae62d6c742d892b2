"""Peak memory of this process, for cost reports (MiB = 2^20 bytes)."""

from __future__ import annotations

import sys


def peak_rss_mib() -> float | None:
    """The process's peak resident set size so far in MiB, to 0.1 (``ru_maxrss``: KiB on Linux,
    bytes on macOS; psutil's ``peak_wset`` on Windows); None where the platform does not tell."""
    try:
        import resource
    except ImportError:  # Windows
        try:
            import psutil
        except ImportError:
            return None
        peak = getattr(psutil.Process().memory_info(), "peak_wset", None)
        return None if peak is None else round(peak / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024, 1)


def peak_gpu_mib() -> float | None:
    """Peak CUDA memory allocated by torch in MiB, to 0.1; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)
