"""Engine ``meta`` (SSM-SAM) end to end: it learns each structure online, keeps the drawn slices,
stops at declared-empty slices, reports its cost, says when it runs from the plain init, and
refuses bad options; ``samfewshot propagate --engine meta`` with an init from ``meta-train``."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.annotation import SparseAnnotation  # noqa: E402
from SAMFewShotLib.cli.main import main  # noqa: E402
from SAMFewShotLib.engines import make_engine  # noqa: E402
from SAMFewShotLib.engines.meta import MetaEngine  # noqa: E402
from SAMFewShotLib.meta.config import MetaConfig  # noqa: E402
from SAMFewShotLib.volume import LabelVolume  # noqa: E402
from SAMFewShotLib.volume_io import read_labels, write_labels, write_volume  # noqa: E402
from Testing.meta import meta_cases  # noqa: E402

DRAWN = [4, 8, 12]
#: The plain init with the "adam" deviation of Algorithm 1 (see the README: from the plain init,
#: the paper's plain SGD does not beat copying the nearest drawn mask on this phantom).
FAST = MetaConfig(steps=24, learning_rate=2e-3, online_optimizer="adam", checkpointing=False)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("meta_engine")
    volume, truth = meta_cases.textured_case(1)
    checkpoint = meta_cases.small_sam_checkpoint(folder / "small.pth")
    return volume, truth, meta_cases.annotation_of(volume, truth, DRAWN), str(checkpoint), folder


@pytest.fixture(scope="module")
def plain_run(case):
    volume, _, annotation, checkpoint, _ = case
    with pytest.warns(UserWarning, match="plain"):
        return MetaEngine(checkpoint, config=FAST).propagate(volume, annotation)


def untrained_dice(checkpoint, volume, truth, drawn) -> float:
    """Dice on the other slices of the same network without online adaptation (plain init)."""
    from SAMFewShotLib.meta.load import load_meta_model
    from SAMFewShotLib.meta.online import PatchCache
    from SAMFewShotLib.meta.predict import predict_structure
    from SAMFewShotLib.meta.slices import prepare
    from SAMFewShotLib.sam.preprocess import Preprocessing

    meta = load_meta_model(checkpoint, config=FAST)
    prep = Preprocessing.for_volume(volume)
    supports = [prepare(meta.network.sam, volume, 0, z, prep, truth[z]) for z in drawn]
    result = predict_structure(meta.network, volume, 0, prep, supports, set(), cache=PatchCache(meta.network))
    predicted = np.zeros(truth.shape, bool)
    predicted[result.first : result.first + len(result.probability)] = result.probability > 0.5
    others = [z for z in range(truth.shape[0]) if z not in drawn]
    return meta_cases.dice(predicted[others], truth[others])


def honest_comparison(case, prediction, drawn) -> tuple[float, dict[str, float]]:
    """(the engine's Dice on the unannotated slices, {baseline: its Dice there})."""
    from SAMFewShotLib.baselines import copy_nearest_drawn

    volume, truth, _, checkpoint, _ = case
    annotation = meta_cases.annotation_of(volume, truth, drawn)
    others = [z for z in range(truth.shape[0]) if z not in drawn]
    learned = meta_cases.dice(prediction.labels.array[others] == 1, truth[others])
    baselines = {
        "copy-nearest": meta_cases.dice(copy_nearest_drawn(annotation)[others] == 1, truth[others]),
        "threshold": meta_cases.best_threshold_dice(volume.array, truth, drawn, others),
        "untrained": untrained_dice(checkpoint, volume, truth, drawn),
    }
    print(f"meta K={len(drawn)}: {learned:.3f} vs " + ", ".join(f"{k} {v:.3f}" for k, v in baselines.items()))
    return learned, baselines


def test_it_keeps_the_drawn_slices(case, plain_run):
    volume, _, annotation, *_ = case
    assert plain_run.labels.volume.same_grid(volume)
    predicted = plain_run.labels.array == 1
    for z in DRAWN:
        np.testing.assert_array_equal(predicted[z], annotation.labels.array[z] == 1)


def test_with_three_drawn_slices_it_beats_every_honest_baseline_by_008(case, plain_run):
    """Issue 17's target for K = 3 on the distractor phantom: Dice >= the best of copy-nearest,
    the best intensity threshold and the untrained network + 0.08."""
    learned, baselines = honest_comparison(case, plain_run, DRAWN)
    assert learned >= max(baselines.values()) + 0.08, (learned, baselines)


def test_with_one_drawn_slice_it_beats_every_honest_baseline_by_003(case):
    """Issue 17's target for K = 1: Dice >= the best baseline + 0.03."""
    volume, truth, _, checkpoint, _ = case
    with pytest.warns(UserWarning, match="plain"):
        run = MetaEngine(checkpoint, config=FAST).propagate(volume, meta_cases.annotation_of(volume, truth, [8]))
    learned, baselines = honest_comparison(case, run, [8])
    assert learned >= max(baselines.values()) + 0.03, (learned, baselines)


def test_the_papers_sgd_from_the_plain_init_learns_but_is_unstable(case):
    """The paper's Algorithm 1 as published (per-pair plain SGD at alpha = 0.05, S = 24) from the
    plain init, K = 3: it learns (far above the untrained network, 0.006) but the result is
    chaotic in the rounding of the machine: measured on this phantom, S = 24: 0.750 (AVX2 CPU, 1
    thread), 0.657 / 0.727 (AVX-512 CPU, 1 / 2 threads); S = 36: 0.770 / 0.769; S = 48: 0.528 /
    0.195; alpha 0.02-0.03: 0.618-0.896. So the test asserts only that it learns (untrained +
    0.3), not a margin over the best threshold (0.634), which it crosses on some machines and
    not on others; it stays at or below copying the nearest drawn mask (0.770) except at alpha
    0.03, S = 36 (0.883 / 0.896).
    From meta-learned inits (benchmarks/bench_meta_init.py, README "Meta engine") it did not reach
    the targets either; meta-training is too slow for a test."""
    volume, truth, annotation, checkpoint, _ = case
    with pytest.warns(UserWarning, match="plain"):
        run = MetaEngine(checkpoint, config=MetaConfig(steps=24, checkpointing=False)).propagate(volume, annotation)
    learned, baselines = honest_comparison(case, run, DRAWN)
    assert learned >= baselines["untrained"] + 0.3, (learned, baselines)


def test_the_report_counts_steps_time_and_memory_and_names_the_plain_init(plain_run):
    counters = plain_run.counters
    assert counters["online_steps"] == 24 and counters["online_steps_per_label"] == 24
    # one pass with gradients per pair update, plus one detached pass at the start for each slice
    # serving as a support (4 and 8: slice 12's nearest other is 8)
    assert counters["support_pairs"] == 3 and counters["online_encoder_passes"] == 24 * 3 + 2
    assert counters["online_seconds"] > 0 and counters["peak_rss_mib"] > 100
    assert counters["init"].startswith("plain")
    losses = plain_run.details[1]["online_losses"]
    assert len(losses) == 24 and plain_run.details[1]["online_final_loss"] < losses[0]
    assert plain_run.seconds["online adaptation"] > 0 and plain_run.seconds["predict"] > 0


def test_a_declared_empty_slice_stops_the_outward_propagation(case):
    volume, _, annotation, checkpoint, _ = case
    stopped = SparseAnnotation.from_labels(annotation.labels, axis=0, empty_slices={1: [13]})
    with pytest.warns(UserWarning):
        prediction = MetaEngine(checkpoint, steps=2, config=FAST).propagate(volume, stopped)
    assert not (prediction.labels.array[13:] == 1).any()
    assert prediction.details[1]["empty_slices"] == [13]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"refine": 1}, "--refine is for the sam engine"),
        ({"checkpoint": None}, "--checkpoint"),
        ({"device": "tpu"}, "tpu"),
        ({"checkpoint": "/nonexistent/sam.pth"}, "sam.pth"),
        ({"steps": 0}, "steps"),
    ],
)
def test_bad_options_are_refused(case, options, message):
    settings = {"checkpoint": case[3], **options}
    with pytest.raises(ValueError, match=message):
        MetaEngine(settings.pop("checkpoint"), **settings)


def test_a_corrupt_init_is_refused_before_any_work(case, tmp_path):
    bad = tmp_path / "init.pt"
    bad.write_bytes(b"not an init")
    with pytest.raises(ValueError, match="not a readable meta init file") as error:
        MetaEngine(case[3], init=str(bad))
    assert "\n" not in str(error.value)


def test_make_engine_builds_the_meta_engine(case):
    engine = make_engine("meta", checkpoint=case[3], model_type=None, device="cpu")
    assert isinstance(engine, MetaEngine)
    with pytest.raises(ValueError, match="--refine is for the sam engine"):
        make_engine("meta", checkpoint=case[3], refine=2)


@pytest.fixture(scope="module")
def cli_case(tmp_path_factory):
    """The small random SAM (256-pixel input: the command's cost is in the 1024-pixel encoder
    otherwise, which the sam and fewshot command tests cover), an init made by meta-train for it."""
    folder = tmp_path_factory.mktemp("meta_cli")
    checkpoint = meta_cases.small_sam_checkpoint(folder / "small.pth")
    data = folder / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    volume, truth = meta_cases.textured_case(2, shape=(10, 32, 32))
    write_volume(volume, data / "images" / "a.nrrd")
    write_labels(LabelVolume(volume.with_array(truth.astype(np.uint8))), data / "labels" / "a.nrrd")
    init = folder / "init.pt"
    assert main(["meta-train", str(data), "-o", str(init), "--checkpoint", str(checkpoint), "--iterations", "1",
                 "--steps", "2", "--shots", "2", "--queries", "1", "--tasks-per-step", "1",
                 "--progress", "none"]) == 0
    image, annotation = folder / "image.nii.gz", folder / "drawn.nii.gz"
    write_volume(volume, image)
    drawn = np.zeros(truth.shape, np.uint8)
    drawn[[3, 6]] = truth[[3, 6]]
    write_labels(LabelVolume(volume.with_array(drawn)), annotation)
    return folder, str(checkpoint), str(init), str(image), str(annotation), volume


def test_cli_propagates_with_a_meta_learned_init_and_reports_its_cost(cli_case):
    folder, checkpoint, init, image, annotation, volume = cli_case
    out, report = folder / "out.nii.gz", folder / "report.json"
    code = main(["propagate", image, annotation, "-o", str(out), "--engine", "meta", "--checkpoint", checkpoint,
                 "--init", init, "--report", str(report), "--progress", "none"])
    assert code == 0
    labels = read_labels(out)
    assert labels.volume.same_grid(volume)
    payload = json.loads(report.read_text())
    counters = payload["counters"]
    assert counters["init"] == init and counters["online_steps"] == 2
    assert counters["online_seconds"] > 0 and counters["peak_rss_mib"] > 100
    assert payload["seconds"]["online adaptation"] > 0


@pytest.mark.parametrize(
    "extra, match",
    [(["--refine", "1"], "--refine is for the sam engine"), (["--init", "BAD"], "not a readable meta init file")],
)
def test_cli_bad_meta_options_exit_2_with_one_line(cli_case, capsys, extra, match):
    folder, checkpoint, _, image, annotation, _ = cli_case
    if "BAD" in extra:
        (folder / "bad.pt").write_bytes(b"\x00" * 10)
        extra = ["--init", str(folder / "bad.pt")]
    out = folder / "never.nii.gz"
    code = main(["propagate", image, annotation, "-o", str(out), "--engine", "meta", "--checkpoint", checkpoint,
                 "--progress", "none", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and match in err and "\n" not in err and not out.exists()
