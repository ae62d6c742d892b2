"""Explicit downloads: HTTP with resume (Range), progress, cancel, sha256 verification.

Everything runs against a server on 127.0.0.1 serving a tiny checkpoint; the registry entry's
URL is pointed at it, and any other connection fails the test."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.progress import Cancelled, CancelToken
from SAMFewShotLib.sam import checkpoints
from SAMFewShotLib.sam import weights_store as ws
from SAMFewShotLib.sam.model_loading import load_sam
from Testing import tiny_sam
from Testing.sam.sam_weights_helpers import LocalServer, encoder_output, forbid_remote_connections, save_tiny

CHUNK = 64 * 1024


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    forbid_remote_connections(monkeypatch)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    return save_tiny(tmp_path_factory.mktemp("served") / "tiny.pth", seed=6).read_bytes()


@pytest.fixture
def server(tiny_bytes, monkeypatch):
    with LocalServer() as srv:
        srv.httpd.files["/weights/mobile_sam.pt"] = tiny_bytes
        entry = dataclasses.replace(
            checkpoints.REGISTRY["mobile_sam"],
            url=srv.url("/weights/mobile_sam.pt"),
            sha256=hashlib.sha256(tiny_bytes).hexdigest(),
            size=len(tiny_bytes),
        )
        monkeypatch.setitem(checkpoints.REGISTRY, "mobile_sam", entry)
        yield srv


def test_download_verifies_records_and_loads(home, server, tiny_bytes):
    seen = []
    result = ws.download_checkpoint("mobile_sam", chunk_size=CHUNK, progress=lambda s, d, t: seen.append((s, d, t)))
    assert result.path == home / "weights" / "mobile_sam.pt"
    assert result.path.read_bytes() == tiny_bytes
    assert result.record.verified_by == "sha256" and result.record.origin == server.url("/weights/mobile_sam.pt")
    assert not result.path.with_name("mobile_sam.pt.part").exists()
    downloads = [d for s, d, t in seen if s == "download"]
    assert downloads == sorted(downloads) and downloads[-1] == len(tiny_bytes) and len(downloads) > 2
    assert {row.name: row.status for row in ws.list_weights()}["mobile_sam"] == "present, verified"
    # the tiny served file is a ViT SAM; the loader builds what the weights are, whatever the entry says
    model, info = load_sam("mobile_sam")
    assert info.name == "mobile_sam" and info.sha256 == result.record.sha256
    assert torch.equal(encoder_output(model), encoder_output(tiny_sam.build_tiny_sam(seed=6)))
    again = ws.download_checkpoint("mobile_sam")
    assert "already present" in again.notes[0] and len(server.httpd.requests) == 1


def test_interrupted_download_resumes_with_a_range_request(home, server, tiny_bytes):
    cut = len(tiny_bytes) // 3
    server.httpd.cut_after.append(cut)
    with pytest.raises(ws.DownloadError, match="interrupted after .* again to resume") as error:
        ws.download_checkpoint("mobile_sam", chunk_size=CHUNK)
    assert "\n" not in str(error.value)
    part = home / "weights" / "mobile_sam.pt.part"
    assert part.stat().st_size == cut
    assert "partial download" in {row.name: row.status for row in ws.list_weights()}["mobile_sam"]
    result = ws.download_checkpoint("mobile_sam", chunk_size=CHUNK)
    assert [r["range"] for r in server.httpd.requests] == [None, f"bytes={cut}-"]
    assert result.path.read_bytes() == tiny_bytes and not part.exists()


def test_server_ignoring_ranges_restarts_the_file(home, server, tiny_bytes):
    server.httpd.cut_after.append(1000)
    with pytest.raises(ws.DownloadError):
        ws.download_checkpoint("mobile_sam", chunk_size=CHUNK)
    server.httpd.honour_range = False
    result = ws.download_checkpoint("mobile_sam", chunk_size=CHUNK)
    assert result.path.read_bytes() == tiny_bytes


def test_corrupted_server_file_is_a_hash_mismatch(home, server, tiny_bytes):
    corrupted = bytearray(tiny_bytes)
    corrupted[len(corrupted) // 2] ^= 0xFF
    server.httpd.files["/weights/mobile_sam.pt"] = bytes(corrupted)
    with pytest.raises(
        ValueError, match="does not match registry checkpoint mobile_sam: wrong sha256.*deleted it"
    ) as error:
        ws.download_checkpoint("mobile_sam", chunk_size=CHUNK)
    assert "\n" not in str(error.value)
    weights = home / "weights"
    assert not (weights / "mobile_sam.pt").exists() and not (weights / "mobile_sam.pt.part").exists()
    assert ws.load_records() == {}


def test_cancel_between_chunks_keeps_the_partial_file_for_resume(home, server, tiny_bytes):
    cancel = CancelToken()

    def progress(stage, done, total):
        if stage == "download" and done >= 2 * CHUNK:
            cancel.cancel()

    with pytest.raises(Cancelled):
        ws.download_checkpoint("mobile_sam", chunk_size=CHUNK, progress=progress, cancel=cancel)
    part = home / "weights" / "mobile_sam.pt.part"
    assert part.stat().st_size == 2 * CHUNK
    result = ws.download_checkpoint("mobile_sam", chunk_size=CHUNK)
    assert result.path.read_bytes() == tiny_bytes
    assert server.httpd.requests[-1]["range"] == f"bytes={2 * CHUNK}-"


def test_http_errors_and_other_schemes_are_one_line_errors(home, server, monkeypatch):
    entry = checkpoints.REGISTRY["mobile_sam"]
    monkeypatch.setitem(checkpoints.REGISTRY, "mobile_sam", dataclasses.replace(entry, url=server.url("/missing.pt")))
    with pytest.raises(ws.DownloadError, match="HTTP 404"):
        ws.download_checkpoint("mobile_sam")
    monkeypatch.setitem(checkpoints.REGISTRY, "mobile_sam", dataclasses.replace(entry, url="file:///etc/passwd"))
    with pytest.raises(ValueError, match="not http"):
        ws.download_checkpoint("mobile_sam")
    with pytest.raises(ValueError, match="Unknown checkpoint name"):
        ws.download_checkpoint("no_such_model")


def test_remote_hosts_are_never_contacted(home, monkeypatch):
    # the guard itself: a registry URL left pointing at the internet fails loudly, not silently
    with pytest.raises(AssertionError, match="tests never use the network"):
        ws.download_checkpoint("sam_vit_b", timeout=2)
