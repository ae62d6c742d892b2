"""Engine ``fewshot`` with a tiny SAM: train on the drawn slices, predict the structure's extent.

Phantom: a bright textured ball spanning slices 2..11 of 16 (0.8 x 0.8 x 2.5 mm, oblique
direction), drawn on slices 5, 7, 9. The tiny SAM has random weights and windowed attention
only (fast encoding); its decoder is trained with a higher learning rate (3e-3, 30 iterations)
than the paper's 1e-4 for pretrained SAM. Torch runs on one thread here (shared CPUs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.engines import make_engine
from SAMFewShotLib.engines.fewshot import FewShotEngine
from SAMFewShotLib.fewshot.training import TrainingConfig
from SAMFewShotLib.progress import Cancelled, CancelToken
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache
from SAMFewShotLib.sam.encoder import torch_threads
from SAMFewShotLib.volume import LabelVolume, Volume
from Testing import phantoms, tiny_sam

N_SLICES, DRAWN = 16, [5, 7, 9]
TINY = TrainingConfig(iterations=30, learning_rate=3e-3, num_threads=1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fewshot_engine")
    shape = (N_SLICES, 40, 40)
    ball = phantoms.ellipsoid((6.5, 20, 18), (5, 11, 10), shape)  # slices 2..11
    image = Volume(phantoms.render(ball, seed=5), spacing=(0.8, 0.8, 2.5), origin=(1.0, -4.0, 30.0),
                   direction=(0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    labels = np.zeros(shape, np.uint8)
    for z in DRAWN:
        labels[z][ball[z]] = 1
    annotation = SparseAnnotation.from_labels(LabelVolume(image.with_array(labels)), axis=0)
    checkpoint = tiny_sam.save_tiny_checkpoint(folder / "tiny.pth", global_attn_indexes=())
    return image, annotation, ball, checkpoint, folder


def engine(case, cache, **options):
    return FewShotEngine(str(case[3]), device="cpu", cache=cache, config=TINY, **options)


@pytest.fixture(scope="module")
def first_run(case):
    cache = EmbeddingCache(directory=case[4] / "embeddings")
    return engine(case, cache).propagate(case[0], case[1]), cache


def test_make_engine_builds_it():
    assert isinstance(make_engine("fewshot", checkpoint=str(Path(__file__))), FewShotEngine)


def test_without_a_checkpoint_the_engine_asks_for_one():
    with pytest.raises(ValueError, match="fewshot.*--checkpoint"):
        make_engine("fewshot")


@pytest.mark.parametrize("option, message", [({"refine": 2}, "--refine is for the sam engine"),
                                             ({"init": "x.pt"}, "--init is for the meta engine"),
                                             ({"device": "tpu"}, "tpu")])
def test_options_of_other_engines_are_refused(case, option, message):
    with pytest.raises(ValueError, match=message):
        make_engine("fewshot", checkpoint=str(case[3]), **option)


def test_it_keeps_the_grid_and_the_drawn_slices(case, first_run):
    image, annotation, *_ = case
    prediction = first_run[0]
    assert prediction.labels.volume.same_grid(image)
    for z in DRAWN:
        np.testing.assert_array_equal(prediction.labels.array[z], annotation.labels.array[z])


def test_it_finds_the_structure_beyond_the_drawn_slices_and_stops(case, first_run):
    _, _, ball, *_ = case
    prediction = first_run[0]
    found = prediction.labels.array == 1
    outside = [z for z in range(N_SLICES) if not DRAWN[0] <= z <= DRAWN[-1]]
    overlap = 2 * (found[outside] & ball[outside]).sum() / (found[outside].sum() + ball[outside].sum())
    assert overlap > 0.6
    details = prediction.details[1]
    low, high = details["predicted_range"]
    assert abs(low - 2) <= 1 and abs(high - 11) <= 1  # outward, stopped near the ball's ends 2 and 11
    assert details["stopped_at"] == {"below": low - 1, "above": high + 1}  # by an empty prediction
    assert prediction.counters["slices_encoded"] < N_SLICES  # slices beyond a batch past the end never


def test_it_reports_training_and_encoding(first_run):
    prediction = first_run[0]
    counters = prediction.counters
    assert counters["train_iterations"] == TINY.iterations and counters["train_seconds"] > 0
    assert counters["encoder_calls"] > 0 and counters["cache_hits"] == 0 and counters["peak_rss_mib"] > 0
    assert {"load model", "fit", "train", "encode", "decode", "predict"} <= set(prediction.seconds)
    assert prediction.details["training"]["held_out"] == {1: 7}


def test_a_second_run_makes_no_encoder_call(case, first_run):
    again = engine(case, EmbeddingCache(directory=case[4] / "embeddings")).propagate(case[0], case[1])
    assert again.counters["encoder_calls"] == 0
    assert again.counters["cache_hits"] == first_run[0].counters["slices_encoded"]
    np.testing.assert_array_equal(again.labels.array, first_run[0].labels.array)  # seeded training


def test_cancel_stops_it_during_training(case, first_run):
    token = CancelToken()

    def progress(stage, done, total):
        if stage == "fewshot: train" and done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        engine(case, first_run[1]).propagate(case[0], case[1], progress=progress, cancel=token)


def test_propagate_runs_it_from_the_command_line(case, first_run, tmp_path, monkeypatch, capsys):
    from SAMFewShotLib.cli.main import main
    from SAMFewShotLib.volume_io import read_labels, write_labels, write_volume

    image, annotation, _, checkpoint, folder = case
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(folder))  # its embeddings/ is the cache of first_run
    write_volume(image, tmp_path / "image.nrrd")
    write_labels(annotation.labels, tmp_path / "drawn.nrrd")
    code = main(["propagate", str(tmp_path / "image.nrrd"), str(tmp_path / "drawn.nrrd"), "-o", str(tmp_path / "out.nrrd"),
                 "--engine", "fewshot", "--checkpoint", str(checkpoint), "--device", "cpu", "--progress", "none",
                 "--report", str(tmp_path / "report.json")])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["engine"] == "fewshot" and report["counters"]["train_iterations"] > 0
    counters = report["counters"]
    # default training (lr 1e-4, 50 iterations) barely moves the tiny random decoder, so its
    # extent differs; every slice first_run encoded comes from the cache, each slice is encoded once
    assert counters["cache_hits"] >= first_run[0].counters["slices_encoded"]
    assert counters["slices_encoded"] + counters["cache_hits"] == len(DRAWN) + counters["slices_predicted"]
    assert read_labels(tmp_path / "out.nrrd").volume.same_grid(image)
