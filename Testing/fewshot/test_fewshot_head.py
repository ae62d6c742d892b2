"""The .sfs head file: round trip, refusal of another base model, damaged and foreign files."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.fewshot import apply_head, load_head, run_head, save_head
from SAMFewShotLib.fewshot.head import FORMAT, FORMAT_VERSION
from Testing import tiny_sam
from Testing.fewshot.fewshot_cases import TINY_GLOBAL_ATTENTION


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    return save_head(trained.head, tmp_path_factory.mktemp("head") / "target.sfs")


def test_a_saved_head_predicts_exactly_what_the_trained_one_did(case, trained, saved):
    loaded = load_head(saved)
    assert loaded.manifest() == json.loads(json.dumps(trained.head.manifest()))
    for value, tokens in trained.head.targets.items():
        assert torch.equal(loaded.targets[value], tokens)
    options = dict(checkpoint=str(case.checkpoint), device="cpu", cache=case.cache)
    before, after = run_head(trained.head, case.image, **options), run_head(loaded, case.image, **options)
    np.testing.assert_array_equal(before.labels.array, after.labels.array)
    assert after.labels.array.any() and after.labels.volume.same_grid(case.image)
    assert after.labels.segments == trained.head.segments  # names and colours kept


def test_apply_predicts_only_the_slices_asked_for(case, trained):
    labels = apply_head(trained.head, case.image, checkpoint=str(case.checkpoint), device="cpu", cache=case.cache,
                        slices=range(3, 6))
    present = {int(z) for z in np.flatnonzero(labels.array.any(axis=(1, 2)))}
    assert present and present <= {3, 4, 5}


def test_a_head_refuses_another_base_model(case, trained, tmp_path):
    other = tiny_sam.save_tiny_checkpoint(tmp_path / "other.pth", seed=1, global_attn_indexes=TINY_GLOBAL_ATTENTION)
    with pytest.raises(ValueError, match="trained on base model") as error:
        apply_head(trained.head, case.image, checkpoint=str(other), device="cpu")
    assert "other.pth" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_file_is_refused_in_one_line(saved, tmp_path, damage):
    data = saved.read_bytes()
    content = {"truncated": data[: len(data) // 2], "garbage": b"not a head" * 100, "empty": b""}[damage]
    path = tmp_path / "bad.sfs"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.sfs is not a readable few-shot head file") as error:
        load_head(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "payload, message",
    [({"model": {"w": torch.zeros(2)}}, "is not a few-shot head file"),
     ({"format": FORMAT, "version": FORMAT_VERSION + 1}, f"version {FORMAT_VERSION + 1}"),
     ({"format": FORMAT, "version": FORMAT_VERSION, "manifest": "{", "decoder": {}, "targets": {}}, "damaged")],
)
def test_a_foreign_or_inconsistent_file_is_refused(tmp_path, payload, message):
    path = tmp_path / "foreign.sfs"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=message):
        load_head(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="nope.sfs"):
        load_head(tmp_path / "nope.sfs")
