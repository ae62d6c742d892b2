"""The weights cache: folder, import (copy, never move), records, list, verify, resolve, load."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.sam import checkpoints
from SAMFewShotLib.sam import weights_store as ws
from SAMFewShotLib.sam.model_loading import load_sam
from Testing import tiny_sam
from Testing.sam.sam_weights_helpers import encoder_output, save_tiny


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(path))
    return path


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    return save_tiny(tmp_path_factory.mktemp("src") / "tiny.pth", seed=4).read_bytes()


@pytest.fixture
def tiny_file(tmp_path, tiny_bytes) -> Path:
    path = tmp_path / "src" / "my_model.pth"
    path.parent.mkdir()
    path.write_bytes(tiny_bytes)
    return path


def _as_registry_entry(monkeypatch, name: str, data: bytes, **changes) -> checkpoints.Checkpoint:
    """Point registry entry ``name`` at the tiny file's digest and size (no real weights here)."""
    values = dict(sha256=hashlib.sha256(data).hexdigest(), size=len(data), md5=None)
    values.update(changes)
    entry = dataclasses.replace(checkpoints.REGISTRY[name], **values)
    monkeypatch.setitem(checkpoints.REGISTRY, name, entry)
    return entry


def test_home_is_the_environment_variable_or_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path / "h"))
    assert ws.weights_dir() == tmp_path / "h" / "weights"
    monkeypatch.delenv("SAMFEWSHOT_HOME")
    assert ws.store_home().name.lower() in ("samfewshot", "cache")
    assert "samfewshot" in str(ws.store_home()).lower()


def test_user_import_copies_records_and_leaves_the_source_untouched(home, tiny_file, tiny_bytes):
    before = (tiny_file.read_bytes(), tiny_file.stat().st_mtime_ns)
    result = ws.import_checkpoint(tiny_file)
    assert (tiny_file.read_bytes(), tiny_file.stat().st_mtime_ns) == before
    record = result.record
    assert (record.name, record.source, record.model_type, record.family, record.verified_by) == (
        "my_model",
        "user",
        "custom",
        "sam",
        "user",
    )
    assert result.path == home / "weights" / "user" / "my_model.pth"
    assert result.path.read_bytes() == tiny_bytes
    assert record.sha256 == hashlib.sha256(tiny_bytes).hexdigest() and record.size == len(tiny_bytes)
    saved = json.loads((home / "weights" / "records.json").read_text())
    assert [c["name"] for c in saved["checkpoints"]] == ["my_model"]
    assert set(saved["checkpoints"][0]) >= {"name", "sha256", "size", "model_type", "family", "source", "imported_at"}
    assert not list((home / "weights").rglob("*.tmp"))
    again = ws.import_checkpoint(tiny_file)
    assert again.record == record and any("already imported" in n for n in again.notes)


def test_same_name_for_different_weights_is_refused(home, tiny_file, tmp_path):
    ws.import_checkpoint(tiny_file, name="mine")
    other = save_tiny(tmp_path / "other.pth", seed=9)
    with pytest.raises(ValueError, match="already imported as mine"):
        ws.import_checkpoint(other, name="mine")


def test_registry_file_is_recognised_by_its_digest(home, tiny_file, tiny_bytes, monkeypatch):
    _as_registry_entry(monkeypatch, "sam_vit_b", tiny_bytes)
    result = ws.import_checkpoint(tiny_file, name="whatever")
    r = result.record
    assert (r.name, r.source, r.model_type, r.family, r.verified_by) == (
        "sam_vit_b",
        "sam_vit_b",
        "vit_b",
        "sam",
        "sha256",
    )
    assert result.path == home / "weights" / "sam_vit_b_01ec64.pth"
    assert any("--name whatever ignored" in n for n in result.notes)
    status = {row.name: row.status for row in ws.list_weights()}
    assert status["sam_vit_b"] == "present, verified"
    assert status["sam_vit_l"] == "not present"


def test_registry_name_with_wrong_sha256_is_refused(home, tiny_file):
    with pytest.raises(ValueError, match="does not match registry checkpoint sam_vit_b: wrong sha256") as error:
        ws.import_checkpoint(tiny_file, name="sam_vit_b")
    assert "\n" not in str(error.value)
    assert not (home / "weights").exists() or not list((home / "weights").rglob("*.pth"))


def test_published_file_name_with_wrong_content_is_refused(home, tiny_file):
    impostor = tiny_file.with_name("mobile_sam.pt")
    tiny_file.rename(impostor)
    with pytest.raises(ValueError, match="registry checkpoint mobile_sam: wrong sha256"):
        ws.import_checkpoint(impostor)


def test_entry_verified_by_md5_records_the_sha256(home, tiny_file, tiny_bytes, monkeypatch):
    _as_registry_entry(monkeypatch, "medsam_vit_b", tiny_bytes, sha256=None, md5=hashlib.md5(tiny_bytes).hexdigest())
    record = ws.import_checkpoint(tiny_file).record
    assert (record.name, record.family, record.verified_by) == ("medsam_vit_b", "medsam", "md5")
    assert record.sha256 == hashlib.sha256(tiny_bytes).hexdigest()
    [result] = ws.verify_weights("medsam_vit_b")
    assert result.ok and "md5" in result.message


def test_first_use_import_still_checks_the_architecture(home, tiny_file, tiny_bytes, monkeypatch):
    _as_registry_entry(monkeypatch, "medsam_vit_b", tiny_bytes, sha256=None, md5=None, size=None, model_type="vit_b")
    with pytest.raises(ValueError, match="contradicts"):  # the weights are still checked to be that model
        ws.import_checkpoint(tiny_file, name="medsam_vit_b")


def test_first_use_record_when_the_layout_agrees(home, tiny_file, tiny_bytes, monkeypatch):
    monkeypatch.setattr(ws, "inspect_model_type", lambda path, model_type: None)  # tiny weights are not vit_b
    _as_registry_entry(monkeypatch, "medsam_vit_b", tiny_bytes, sha256=None, md5=None, size=None)
    result = ws.import_checkpoint(tiny_file, name="medsam_vit_b")
    assert result.record.verified_by == "first-use"
    assert any("no reference hash" in n and result.record.sha256 in n for n in result.notes)
    status = {row.name: row.status for row in ws.list_weights()}
    assert status["medsam_vit_b"] == "present, no reference hash (sha256 recorded on first use)"
    [check] = ws.verify_weights("medsam_vit_b")
    assert check.ok and "no reference hash" in check.message


def test_verify_detects_a_changed_file(home, tiny_file):
    result = ws.import_checkpoint(tiny_file)
    assert [r.ok for r in ws.verify_weights()] == [True]
    data = bytearray(result.path.read_bytes())
    data[-100] ^= 0xFF
    result.path.write_bytes(bytes(data))
    [check] = ws.verify_weights("my_model")
    assert not check.ok and check.actual != check.expected
    result.path.write_bytes(bytes(data[:-10]))
    assert {r.name: r.status for r in ws.list_weights()}["my_model"].startswith("present, hash mismatch")


def test_verify_of_a_name_not_imported_says_how_to_get_it(home):
    with pytest.raises(ValueError, match="weights download sam_vit_h"):
        ws.verify_weights("sam_vit_h")
    with pytest.raises(ValueError, match="No imported checkpoint is called 'nope'"):
        ws.verify_weights("nope")


def test_resolve_by_path_and_by_name(home, tiny_file):
    assert ws.resolve_checkpoint(tiny_file) == (tiny_file, None)
    result = ws.import_checkpoint(tiny_file, name="mine")
    assert ws.resolve_checkpoint("mine") == (result.path, result.record.sha256)
    assert ws.resolve_checkpoint(result.path) == (result.path, result.record.sha256)
    with pytest.raises(ValueError, match="not in the weights cache .*weights download sam_vit_b"):
        ws.resolve_checkpoint("sam_vit_b")
    with pytest.raises(ValueError, match="Checkpoint file not found: missing.pth"):
        ws.resolve_checkpoint("missing.pth")
    with pytest.raises(ValueError, match="Unknown checkpoint 'nothing'"):
        ws.resolve_checkpoint("nothing")


def test_load_by_registry_name_verifies_the_digest_first(home, tiny_file, tiny_bytes, monkeypatch):
    _as_registry_entry(monkeypatch, "sam_vit_b", tiny_bytes)
    path = ws.import_checkpoint(tiny_file).path
    model, info = load_sam("sam_vit_b")
    assert (info.name, info.family, info.path) == ("sam_vit_b", "sam", path)
    assert info.sha256 == hashlib.sha256(tiny_bytes).hexdigest()
    assert torch.equal(encoder_output(model), encoder_output(tiny_sam.build_tiny_sam(seed=4)))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    def no_torch_load(*args, **kwargs):
        raise AssertionError("torch.load must not run on a file whose digest is wrong")

    monkeypatch.setattr(torch, "load", no_torch_load)
    with pytest.raises(ValueError, match="wrong or corrupted file"):
        load_sam("sam_vit_b")


def test_import_refuses_bad_files(home, tmp_path, tiny_bytes):
    with pytest.raises(ValueError, match="Checkpoint file not found"):
        ws.import_checkpoint(tmp_path / "absent.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(tiny_bytes[: len(tiny_bytes) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        ws.import_checkpoint(cut)
    full = tmp_path / "full.pth"
    full.write_bytes(tiny_bytes)
    with pytest.raises(ValueError, match="Unknown architecture 'vit_q'"):
        ws.import_checkpoint(full, model_type="vit_q")
    with pytest.raises(ValueError, match="--model-type vit_l contradicts"):
        ws.import_checkpoint(full, model_type="vit_l")
    with pytest.raises(ValueError, match="Checkpoint name must be"):
        ws.import_checkpoint(full, name="../evil")
    assert ws.load_records() == {}
