"""Peak memory of this process, for cost reports."""

from __future__ import annotations

import sys


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MB (10^6 bytes); 0.0 where the platform
    does not tell (Windows without psutil's peak_wset)."""
    try:
        import resource
    except ImportError:  # Windows
        try:
            import psutil

            return float(getattr(psutil.Process().memory_info(), "peak_wset", 0)) / 1e6
        except ImportError:
            return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak) / 1e6 if sys.platform == "darwin" else float(peak) * 1024 / 1e6


def peak_gpu_mb() -> float | None:
    """Peak CUDA memory allocated by torch in MB, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return float(torch.cuda.max_memory_allocated()) / 1e6
