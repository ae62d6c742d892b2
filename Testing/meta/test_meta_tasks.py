"""Meta-training tasks and episodes: supports spread over the structure, queries inside it, one
empty slice just outside, each query paired with its nearest support."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import numpy as np

from SAMFewShotLib.meta.tasks import sample_episode, tasks_from_volumes
from SAMFewShotLib.sam.model_loading import load_sam
from SAMFewShotLib.volume import LabelVolume
from Testing.meta import meta_cases


def labelled(seed, values=(1,)):
    volume, truth = meta_cases.textured_case(seed, shape=(12, 32, 32))
    labels = np.zeros(truth.shape, np.uint8)
    labels[truth] = values[0]
    if len(values) > 1:
        labels[5, :2, :2] = values[1]  # a structure on a single slice
    return (f"case{seed}", volume, LabelVolume(volume.with_array(labels)))


def test_tasks_skip_structures_on_too_few_slices():
    tasks, notes = tasks_from_volumes([labelled(0, (1, 7))])
    assert [t.name for t in tasks] == ["case0:1"]
    assert notes == ["case0:7 skipped: 1 slices (fewer than 3)"]


def test_a_label_in_no_volume_is_refused():
    with pytest.raises(ValueError, match="Label 4 is in none"):
        tasks_from_volumes([labelled(0)], labels=[1, 4])


def test_an_episode_spreads_supports_and_adds_an_empty_slice_outside(tmp_path):
    sam = load_sam(meta_cases.small_sam_checkpoint(tmp_path / "small.pth"))[0]
    (task,), _ = tasks_from_volumes([labelled(1)])
    slices = task.slices
    for seed in range(3):
        episode = sample_episode(sam, task, 3, 2, 0.1, np.random.default_rng(seed))
        supports = [s.index for s in episode.support_set.supports]
        assert len(supports) == 3 and supports == sorted(supports)
        thirds = np.array_split(np.asarray(slices), 3)
        assert all(z in part for z, part in zip(supports, thirds))
        inside = [q for q, _ in episode.queries if slices[0] <= q.index <= slices[-1]]
        outside = [q for q, _ in episode.queries if q.index not in slices]
        assert len(inside) == 2 and not set(q.index for q in inside) & set(supports)
        assert len(outside) == 1 and not outside[0].mask.any()
        for query, support in episode.queries:
            assert abs(query.index - support.index) == min(abs(query.index - z) for z in supports)
