"""The paper's augmentation through TorchIO: seeded, pair-consistent mirroring, target-only deformation."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchio")

import torch

from SAMFewShotLib.atlas.rrl.augmentation import augment_pair


def _pair(size: int = 32):
    g = torch.Generator().manual_seed(1)
    atlas = torch.rand((1, 1, size, size, size), generator=g)
    onehot = torch.nn.functional.avg_pool3d(atlas, 2).repeat(1, 3, 1, 1, 1)
    target = torch.rand((1, 1, size, size, size), generator=g)
    return atlas, onehot, target


def test_same_generator_state_gives_the_same_augmentation_and_inputs_are_untouched():
    atlas, onehot, target = _pair()
    copies = [t.clone() for t in (atlas, onehot, target)]
    first = augment_pair(atlas, onehot, target, torch.Generator().manual_seed(7))
    second = augment_pair(atlas, onehot, target, torch.Generator().manual_seed(7))
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)
    for before, now in zip(copies, (atlas, onehot, target)):
        torch.testing.assert_close(before, now)
    assert [tuple(t.shape) for t in first] == [tuple(t.shape) for t in (atlas, onehot, target)]


def test_the_atlas_and_its_labels_are_mirrored_together_along_x_and_the_target_is_deformed():
    atlas, onehot, target = _pair()
    flipped_seen = deformed_seen = 0
    generator = torch.Generator().manual_seed(0)
    for _ in range(12):
        a, o, t = augment_pair(atlas, onehot, target, generator)
        flipped = torch.equal(a, atlas.flip(4))
        assert flipped or torch.equal(a, atlas)  # the atlas is only ever mirrored, left-right
        torch.testing.assert_close(o, onehot.flip(4) if flipped else onehot)  # its labels with it
        flipped_seen += flipped
        target_view = target.flip(4) if flipped else target
        deformed_seen += not torch.allclose(t, target_view)
        assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert 0 < flipped_seen < 12 and deformed_seen > 0
