"""Mutual EMA (RRL-MedSAM Eq. 2-3) between the general and medical encoders."""

import pytest

pytest.importorskip("torch")

import torch
from torch import nn

from SAMFewShotLib.atlas.rrl.ema import mutual_ema_


def _pair(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    general = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Linear(5, 2))
    medical = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Linear(5, 2))
    return general, medical


def test_update_is_equations_2_and_3_with_pre_update_values():
    general, medical = _pair()
    g0 = {k: v.clone() for k, v in general.state_dict().items()}
    m0 = {k: v.clone() for k, v in medical.state_dict().items()}
    alpha = 0.99
    mutual_ema_(general, medical, alpha)
    for name in g0:
        expected_g = alpha * g0[name] + (1 - alpha) * m0[name]  # Eq. 2
        expected_m = alpha * m0[name] + (1 - alpha) * g0[name]  # Eq. 3, pre-update theta_g
        torch.testing.assert_close(general.state_dict()[name], expected_g, rtol=0, atol=1e-7)
        torch.testing.assert_close(medical.state_dict()[name], expected_m, rtol=0, atol=1e-7)
    # Not the sequential variant (Eq. 3 with the already-updated theta_g):
    name = "0.weight"
    sequential_m = alpha * m0[name] + (1 - alpha) * (alpha * g0[name] + (1 - alpha) * m0[name])
    assert not torch.allclose(medical.state_dict()[name], sequential_m, rtol=0, atol=1e-7)


def test_updates_the_module_parameters_in_place():
    general, medical = _pair()
    weight = general[0].weight
    mean = (weight.detach() + medical[0].weight.detach()) / 2
    mutual_ema_(general, medical, 0.5)
    assert general[0].weight is weight
    torch.testing.assert_close(weight.detach(), mean, rtol=0, atol=1e-7)
    torch.testing.assert_close(medical[0].weight.detach(), mean, rtol=0, atol=1e-7)


def test_alpha_one_changes_nothing_and_alpha_zero_swaps():
    general, medical = _pair()
    g0 = general[0].weight.detach().clone()
    m0 = medical[0].weight.detach().clone()
    mutual_ema_(general, medical, 1.0)
    assert torch.equal(general[0].weight, g0) and torch.equal(medical[0].weight, m0)
    mutual_ema_(general, medical, 0.0)
    assert torch.equal(general[0].weight, m0) and torch.equal(medical[0].weight, g0)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_outside_unit_interval_is_refused(alpha):
    general, medical = _pair()
    with pytest.raises(ValueError, match="alpha"):
        mutual_ema_(general, medical, alpha)


def test_different_structures_are_refused():
    with pytest.raises(ValueError, match="same structure"):
        mutual_ema_(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2)), 0.9)
    with pytest.raises(ValueError, match="differs in shape"):
        mutual_ema_(nn.Linear(2, 2), nn.Linear(2, 3), 0.9)
