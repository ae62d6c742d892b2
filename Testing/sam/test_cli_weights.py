"""``samfewshot weights ...``: the parser from add_weights_parser, run in-process, and (once
cli.py wires it) the real command in a subprocess."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")  # the helpers build tiny SAM checkpoints

from SAMFewShotLib.cli.weights import add_weights_parser
from SAMFewShotLib.progress import CancelToken, no_progress
from SAMFewShotLib.sam import checkpoints
from Testing.sam.sam_weights_helpers import LocalServer, forbid_remote_connections, save_tiny

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    forbid_remote_connections(monkeypatch)
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    return save_tiny(tmp_path_factory.mktemp("cli") / "tiny.pth", seed=8).read_bytes()


@pytest.fixture
def tiny_file(tmp_path, tiny_bytes) -> Path:
    path = tmp_path / "tiny.pth"
    path.write_bytes(tiny_bytes)
    return path


def run(*argv: str) -> int:
    """Parse like `samfewshot weights ...` and run the subcommand in-process."""
    parser = argparse.ArgumentParser(prog="samfewshot")
    sub = parser.add_subparsers(dest="command", required=True)
    add_weights_parser(sub)
    args = parser.parse_args(["weights", *argv])
    return args.func(args, no_progress, CancelToken())


def one_line_error(*argv: str) -> str:
    with pytest.raises(ValueError) as error:
        run(*argv)
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_list_shows_registry_entries_and_the_cache_folder(home, capsys):
    assert run("list", "--progress", "none") == 0
    out = capsys.readouterr().out
    assert f"Weights cache: {home / 'weights'}" in out
    for name in ("sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam_vit_b", "mobile_sam"):
        assert name in out
    assert "not present" in out


def test_import_then_list_and_verify(tiny_file, capsys):
    assert run("import", str(tiny_file), "--name", "mine") == 0
    out = capsys.readouterr().out
    assert "Imported mine (custom, sam)" in out and hashlib.sha256(tiny_file.read_bytes()).hexdigest() in out
    assert run("list", "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["checkpoints"]}
    assert rows["mine"]["status"] == "present (user import)" and rows["sam_vit_b"]["status"] == "not present"
    assert run("verify") == 0
    assert capsys.readouterr().out.startswith("ok")


def test_verify_failure_is_reported_then_exits_with_bad_input(home, tiny_file, capsys):
    run("import", str(tiny_file))
    cached = home / "weights" / "user" / "tiny.pth"
    data = bytearray(cached.read_bytes())
    data[10] ^= 0xFF
    cached.write_bytes(bytes(data))
    message = one_line_error("verify", "tiny")
    assert "1 of 1 checkpoints failed verification: tiny" in message
    assert "FAILED" in capsys.readouterr().out


def test_download_from_a_local_server(home, tiny_bytes, monkeypatch, capsys):
    with LocalServer() as server:
        server.httpd.files["/sam_vit_b_01ec64.pth"] = tiny_bytes
        entry = dataclasses.replace(
            checkpoints.REGISTRY["sam_vit_b"],
            url=server.url("/sam_vit_b_01ec64.pth"),
            sha256=hashlib.sha256(tiny_bytes).hexdigest(),
            size=len(tiny_bytes),
        )
        monkeypatch.setitem(checkpoints.REGISTRY, "sam_vit_b", entry)
        assert run("download", "sam_vit_b", "--progress", "none") == 0
    captured = capsys.readouterr()
    assert "Downloading sam_vit_b" in captured.err and entry.url in captured.err
    assert "Downloaded sam_vit_b (vit_b, sam)" in captured.out
    assert (home / "weights" / "sam_vit_b_01ec64.pth").read_bytes() == tiny_bytes


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "Checkpoint file not found"),
        ("truncated", "truncated or corrupt"),
        ("wrong_sha256", "does not match registry checkpoint sam_vit_h: wrong sha256"),
        ("unknown_architecture", "Unknown architecture 'vit_q'"),
        ("other_family", "not a SAM checkpoint"),
    ],
)
def test_bad_input_is_one_line(case, expected, tmp_path, tiny_file):
    argv = ["import", str(tiny_file)]
    if case == "missing":
        argv = ["import", str(tmp_path / "absent.pth")]
    elif case == "truncated":
        data = tiny_file.read_bytes()
        tiny_file.write_bytes(data[: len(data) // 2])
    elif case == "wrong_sha256":
        argv += ["--name", "sam_vit_h"]
    elif case == "unknown_architecture":
        argv += ["--model-type", "vit_q"]
    elif case == "other_family":
        torch = pytest.importorskip("torch")
        torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.weight": torch.zeros(2, 4)}, tiny_file)
    assert expected in one_line_error(*argv)


def _weights_wired() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "SAMFewShotLib", "weights", "--help"], cwd=ROOT, capture_output=True, timeout=120
    )
    return done.returncode == 0


@pytest.mark.skipif(not _weights_wired(), reason="`weights` is not wired into SAMFewShotLib/cli.py yet")
def test_command_line_keeps_the_exit_code_contract(tmp_path, tiny_file):
    env = dict(os.environ, SAMFEWSHOT_HOME=str(tmp_path / "cli_home"))

    def samfewshot(*argv):
        return subprocess.run(
            [sys.executable, "-m", "SAMFewShotLib", "weights", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = samfewshot("import", str(tiny_file), "--progress", "none")
    assert ok.returncode == 0, ok.stderr
    assert samfewshot("list").returncode == 0
    bad = samfewshot("import", str(tmp_path / "absent.pth"), "--progress", "none")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Checkpoint file not found" in bad.stderr
    assert "Traceback" not in bad.stderr
    wrong = samfewshot("import", str(tiny_file), "--model-type", "vit_q", "--progress", "none")
    assert wrong.returncode == 2 and "Unknown architecture 'vit_q'" in wrong.stderr


def test_list_shows_this_machines_measured_cpu_seconds_per_slice(home, capsys):
    from SAMFewShotLib.sam.encoder_budget import EncoderTimings, timings_path

    EncoderTimings(timings_path(home / "embeddings")).record("vit_t/onnx-fp32/cpu/2threads", 6.4, 4)
    assert run("list", "--progress", "none") == 0
    lines = capsys.readouterr().out.splitlines()
    (mobile,) = [line for line in lines if line.startswith("mobile_sam ")]
    assert "1.60" in mobile.split()
    (vit_b,) = [line for line in lines if line.startswith("sam_vit_b ")]
    assert "-" in vit_b.split()
    assert run("list", "--json", "--progress", "none") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["checkpoints"]}
    assert rows["mobile_sam"]["cpu_seconds_per_slice_here"] == pytest.approx(1.6)
    assert rows["sam_vit_b"]["cpu_seconds_per_slice_here"] is None
