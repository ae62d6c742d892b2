"""Training RRL-MedSAM on small synthetic pairs, writing and applying its bundle.

The learning test is honest: the phantom holds same-intensity distractors (no intensity
threshold segments it), and the trained network must beat the best of three baselines by a
margin: the untrained network, the best intensity interval per label (chosen with the
reference: an upper bound for any threshold) and the identity warp (atlas labels as they are).
"""

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.atlas.bundle import load_bundle, write_bundle
from SAMFewShotLib.atlas.rrl.apply import apply_rrl
from SAMFewShotLib.atlas.rrl.cube import cube_tensor, labels_from_cube, labels_to_cube
from SAMFewShotLib.atlas.rrl.data import prepare_training_data
from SAMFewShotLib.atlas.rrl.model import RRLConfig, RRLMedSAM
from SAMFewShotLib.atlas.rrl.network_file import NETWORK_MEMBER, load_network, save_network
from SAMFewShotLib.atlas.rrl.spatial_transformer import warp
from SAMFewShotLib.atlas.rrl.training import TrainSettings, train_rrl_bundle
from SAMFewShotLib.metrics import dice
from SAMFewShotLib.volume import LabelVolume
from Testing.atlas.rrl.rrl_synthetic import phantom, targets

SIZE = 32
# measured (seeded, 1 thread; README): at learning rate 2e-3, 120 iterations gave the learning
# test's means 0.553 / 0.538 vs 0.461 (held-out registration 0.575 vs 0.546) on an AVX2 CPU, but
# 0.521 / 0.497 on an AVX-512 one (session 7: the trajectory follows the machine's rounding), where
# 160 gave 0.543 / 0.514, 200 0.524 / 0.536 and 240 0.577 / 0.554 (segmentation / registration)
ITERATIONS = 240
QUICK_ITERATIONS = 5  # for the tests of files and grids, not of learning
SETTINGS = TrainSettings(dice_warmup=20, learning_rate=2e-3, checkpoint_every=1000)
#: Required lead of the trained network's mean Dice over the best baseline.
MARGIN = 0.05


def _mean_dice(labels: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean([dice(labels == v, reference == v) for v in (1, 2)]))


def _best_threshold_dice(image: np.ndarray, reference: np.ndarray) -> float:
    """Mean over the labels of the best Dice of any intensity interval [lo, hi] (41 quantiles)."""
    levels = np.unique(np.quantile(image, np.linspace(0.0, 1.0, 41)))
    best = []
    for value in (1, 2):
        truth = reference == value
        best.append(max(
            dice((image >= lo) & (image <= hi), truth) for i, lo in enumerate(levels) for hi in levels[i + 1:]
        ))
    return float(np.mean(best))


def _train(folder, iterations: int) -> dict:
    atlas_image, atlas_labels = phantom(distractors=True)
    cases = targets(4, distractors=True)
    bundle = train_rrl_bundle(
        atlas_image, atlas_labels, [image for image, _ in cases[:3]], folder / "atlas.zip",
        size=SIZE, iterations=iterations, settings=SETTINGS,
    )
    return {"bundle": bundle, "work": folder / "atlas.zip.work", "atlas": (atlas_image, atlas_labels), "cases": cases}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The default pipeline (alternating steps, augmentation, Dice ramp 20-40) trained for
    ITERATIONS (~50 s on one core of an idle AVX-512 machine)."""
    return _train(tmp_path_factory.mktemp("rrl"), ITERATIONS)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("rrl_quick"), QUICK_ITERATIONS)


def _untrained_bundle(trained, folder):
    atlas_image, atlas_labels = trained["atlas"]
    torch.manual_seed(SETTINGS.seed)
    network = folder / NETWORK_MEMBER
    save_network(network, RRLMedSAM(RRLConfig(size=SIZE, n_classes=3)), [1, 2])
    source = load_bundle(trained["bundle"])
    return load_bundle(write_bundle(
        folder / "untrained", name="untrained", atlases=[(atlas_image, atlas_labels)], modality=source.modality,
        normalisation=source.normalisation, engine="rrl_medsam", parameters={}, weights={NETWORK_MEMBER: network},
    ))


@pytest.mark.slow
def test_training_beats_the_untrained_network_thresholds_and_the_identity_warp(trained, tmp_path):
    bundle = load_bundle(trained["bundle"])
    untrained = _untrained_bundle(trained, tmp_path)
    atlas_labels = trained["atlas"][1].array
    scores: dict[str, list[float]] = {
        "segmentation": [], "registration": [], "untrained": [], "threshold": [], "identity": []
    }
    for image, reference in trained["cases"]:  # 3 unlabelled training images + 1 held out
        scores["segmentation"].append(_mean_dice(apply_rrl(bundle, image).array, reference.array))
        registered = apply_rrl(bundle, image, output="registration")
        assert registered.volume.same_grid(image)
        scores["registration"].append(_mean_dice(registered.array, reference.array))
        scores["untrained"].append(_mean_dice(apply_rrl(untrained, image).array, reference.array))
        scores["threshold"].append(_best_threshold_dice(image.array, reference.array))
        scores["identity"].append(_mean_dice(atlas_labels, reference.array))
    mean = {k: round(float(np.mean(v)), 3) for k, v in scores.items()}
    best_baseline = max(mean["untrained"], mean["threshold"], mean["identity"])
    print(f"RRL learning test, {ITERATIONS} iterations: {mean}")
    assert mean["threshold"] < 0.5, mean  # the distractors defeat thresholds
    assert mean["registration"] > best_baseline + MARGIN, mean
    assert mean["segmentation"] > best_baseline + MARGIN, mean
    held_out = {k: v[-1] for k, v in scores.items()}
    assert held_out["registration"] > max(held_out["untrained"], held_out["threshold"], held_out["identity"]), scores


@pytest.mark.slow
def test_registration_branch_improves_over_the_identity_warp(trained):
    bundle = load_bundle(trained["bundle"])  # its extracted files live as long as this object
    model, values = load_network(bundle.weights_path(NETWORK_MEMBER))
    atlas_image, atlas_labels = trained["atlas"]
    better = []
    for image, reference in trained["cases"]:
        data = prepare_training_data(atlas_image, atlas_labels, [image], SIZE, bundle.normalisation)
        with torch.no_grad():
            flow = model(data.atlas, data.targets[0]).flow
            warped = warp(data.atlas_onehot, flow).argmax(1)[0].numpy()
        cube_reference = labels_to_cube(reference, SIZE).array[::2, ::2, ::2]
        identity = data.atlas_onehot.argmax(1)[0].numpy()
        better.append(_mean_dice(warped, cube_reference) - _mean_dice(identity, cube_reference))
    assert np.mean(better) > 0.03, better


def test_bundle_round_trip_gives_identical_labels(quick, tmp_path):
    image, _ = quick["cases"][3]
    # before: the trained weights as training left them in the work folder
    model, values = load_network(quick["work"] / NETWORK_MEMBER)
    bundle = load_bundle(quick["bundle"])
    tensor, cube = cube_tensor(image, SIZE, bundle.normalisation)
    with torch.no_grad():
        classes = model.upsample_logits(model.segment(tensor).medical_logits).argmax(1)[0].numpy()
    before = labels_from_cube(LabelVolume(cube.with_array(np.array([0, *values])[classes].astype(np.uint8))), image)
    after = apply_rrl(bundle, image)
    np.testing.assert_array_equal(after.array, before.array)
    # and again after re-writing the loaded bundle as a folder
    copy = write_bundle(
        tmp_path / "copy", name=bundle.name, atlases=[bundle.atlas(0)], modality=bundle.modality,
        normalisation=bundle.normalisation, engine=bundle.engine, parameters=bundle.parameters,
        weights={NETWORK_MEMBER: bundle.weights_path(NETWORK_MEMBER)},
    )
    np.testing.assert_array_equal(apply_rrl(load_bundle(copy), image).array, after.array)


def test_apply_returns_labels_on_the_image_grid_with_the_bundle_segments(quick):
    bundle = load_bundle(quick["bundle"])
    image, _ = phantom(shape=(24, 36, 40), spacing=(1.2, 1.3, 2.6), direction=(0, 1, 0, -1, 0, 0, 0, 0, 1), seed=5)
    labels = apply_rrl(bundle, image)
    assert labels.volume.same_grid(image)
    assert labels.array.shape == (24, 36, 40)
    assert set(np.unique(labels.array)) <= {0, 1, 2}
    names = {s.value: (s.name, s.color) for s in labels.segments}
    assert names == {1: ("core", (0.9, 0.2, 0.2)), 2: ("side", (0.2, 0.4, 0.9))}
    assert bundle.engine == "rrl_medsam" and bundle.parameters["label_values"] == [1, 2]
    assert bundle.parameters["iterations"] == QUICK_ITERATIONS and bundle.parameters["seconds_per_iteration"] > 0


def test_apply_refuses_a_registration_bundle_and_unknown_outputs(quick, tmp_path):
    image, labels = phantom()
    bundle = load_bundle(write_bundle(tmp_path / "b", name="reg", atlases=[(image, labels)]))
    with pytest.raises(ValueError, match="rrl_medsam"):
        apply_rrl(bundle, image)
    with pytest.raises(ValueError, match="output must be one of"):
        apply_rrl(load_bundle(quick["bundle"]), image, output="fusion")
