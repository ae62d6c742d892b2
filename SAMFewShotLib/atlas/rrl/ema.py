"""Mutual exponential moving average between the general and the medical encoders (RRL-MedSAM
Eq. 2-3).

With theta_g the general (lightweight, SAM-distilled) encoder's parameters and theta_m the
medical encoder's, after every optimiser step::

    (2)  theta_g <- alpha * theta_g + (1 - alpha) * theta_m
    (3)  theta_m <- alpha * theta_m + (1 - alpha) * theta_g

both right-hand sides taken at their values *before* this update (a simultaneous exchange),
alpha = 0.99. Floating-point buffers are exchanged the same way; the two modules must have the
same structure.
"""

from __future__ import annotations

import torch
from torch import nn

#: The paper's smoothing coefficient.
DEFAULT_ALPHA = 0.99


@torch.no_grad()
def mutual_ema_(general: nn.Module, medical: nn.Module, alpha: float = DEFAULT_ALPHA) -> None:
    """Apply Eq. 2-3 in place to ``general`` and ``medical`` (same architecture)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], not {alpha}")
    g_state, m_state = general.state_dict(), medical.state_dict()
    if g_state.keys() != m_state.keys():
        raise ValueError("The general and medical encoders must have the same structure")
    gs, ms = [], []
    for name, g in g_state.items():
        m = m_state[name]
        if g.shape != m.shape:
            raise ValueError(f"Parameter {name} differs in shape: {tuple(g.shape)} vs {tuple(m.shape)}")
        if torch.is_floating_point(g):
            gs.append(g)
            ms.append(m)
    if not gs:
        return
    # multi-tensor (foreach) ops: the same arithmetic as per-tensor mul_/add_, one call per list
    g_before = torch._foreach_mul(gs, 1.0)
    torch._foreach_mul_(gs, alpha)
    torch._foreach_add_(gs, ms, alpha=1.0 - alpha)  # Eq. 2 (ms still hold their pre-update values)
    torch._foreach_mul_(ms, alpha)
    torch._foreach_add_(ms, g_before, alpha=1.0 - alpha)  # Eq. 3 with the pre-update theta_g
