"""Engine ``sam`` with ``encoder_runtime="onnx"`` (ONNX Runtime image encoder on the CPU) on a
tiny random-weight SAM: the same segmentation as the torch encoder, the export cached in the
weights store, and the CLI's ``--encoder-runtime`` with its one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from SAMFewShotLib.cli.main import main
from SAMFewShotLib.engines import make_engine
from SAMFewShotLib.files import sha256_file
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache
from SAMFewShotLib.sam.onnx_encoder import cached_encoder_path
from SAMFewShotLib.volume_io import write_labels, write_volume
from Testing.sam.test_sam_engine import case  # noqa: F401 - the fixture


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path / "home"))


def run(case, runtime):  # noqa: F811
    image, annotation, checkpoint, _, _ = case
    engine = make_engine(
        "sam:interpolate", checkpoint=str(checkpoint), cache=EmbeddingCache.memory_only(), encoder_runtime=runtime,
        device="cpu",
    )
    return engine.propagate(image, annotation)


def test_onnx_runtime_gives_the_torch_segmentation_and_caches_its_export(case, tmp_path):  # noqa: F811
    checkpoint = case[2]
    torch_run = run(case, "torch")
    onnx_run = run(case, "onnx")
    assert np.array_equal(torch_run.labels.array, onnx_run.labels.array)
    assert onnx_run.counters["encoder_runtime"] == "onnx"
    assert onnx_run.counters["slices_encoded"] == torch_run.counters["slices_encoded"] > 0
    exported = cached_encoder_path(sha256_file(checkpoint), "onnx", home=tmp_path / "home")
    assert exported.is_file()
    assert "onnx encoder" in onnx_run.seconds


def _inputs(case, tmp_path):  # noqa: F811
    image, annotation, checkpoint, _, _ = case
    write_volume(image, tmp_path / "image.nrrd")
    write_labels(annotation.labels, tmp_path / "drawn.nrrd")
    return ["propagate", str(tmp_path / "image.nrrd"), str(tmp_path / "drawn.nrrd"), "-o", str(tmp_path / "out.nrrd"),
            "--progress", "none"], checkpoint


def test_cli_default_runtime_is_onnx_on_the_cpu_and_reported(case, tmp_path):  # noqa: F811
    command, checkpoint = _inputs(case, tmp_path)
    report = tmp_path / "report.json"
    code = main([*command, "--engine", "sam:interpolate", "--checkpoint", str(checkpoint), "--device", "cpu",
                 "--report", str(report)])  # the default --encoder-runtime auto: onnx on the CPU
    assert code == 0
    assert json.loads(report.read_text())["counters"]["encoder_runtime"] == "onnx"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--engine", "register"], "--encoder-runtime"),
        (["--engine", "fewshot", "--checkpoint", "CHECKPOINT"], "--encoder-runtime is for the sam engine"),
        (["--engine", "sam", "--checkpoint", "CHECKPOINT", "--device", "cuda"], "runs on the CPU"),
    ],
)
def test_cli_refuses_the_onnx_runtime_where_it_does_not_apply(case, tmp_path, capsys, extra, message):  # noqa: F811
    command, checkpoint = _inputs(case, tmp_path)
    extra = [str(checkpoint) if part == "CHECKPOINT" else part for part in extra]
    assert main([*command, *extra, "--encoder-runtime", "onnx"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "out.nrrd").exists()
