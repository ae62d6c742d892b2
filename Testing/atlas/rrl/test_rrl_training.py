"""Training RRL-MedSAM on small synthetic pairs, writing and applying its bundle."""

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
ITERATIONS = 150
SETTINGS = TrainSettings(dice_warmup=20, checkpoint_every=1000)


def _mean_dice(labels: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean([dice(labels == v, reference == v) for v in (1, 2)]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rrl")
    atlas_image, atlas_labels = phantom()
    cases = targets(4)
    bundle = train_rrl_bundle(
        atlas_image, atlas_labels, [image for image, _ in cases[:3]], folder / "atlas.zip",
        size=SIZE, iterations=ITERATIONS, settings=SETTINGS,
    )
    return {"bundle": bundle, "work": folder / "atlas.zip.work", "atlas": (atlas_image, atlas_labels), "cases": cases}


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


def test_training_improves_dice_over_the_untrained_network_and_the_identity_warp(trained, tmp_path):
    bundle = load_bundle(trained["bundle"])
    untrained = _untrained_bundle(trained, tmp_path)
    atlas_labels = trained["atlas"][1].array
    scores = {"trained": [], "registration": [], "untrained": [], "identity": []}
    for image, reference in trained["cases"]:  # 3 unlabelled training images + 1 held out
        scores["trained"].append(_mean_dice(apply_rrl(bundle, image).array, reference.array))
        registered = apply_rrl(bundle, image, output="registration")
        assert registered.volume.same_grid(image)
        scores["registration"].append(_mean_dice(registered.array, reference.array))
        scores["untrained"].append(_mean_dice(apply_rrl(untrained, image).array, reference.array))
        scores["identity"].append(_mean_dice(atlas_labels, reference.array))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    assert mean["trained"] > mean["identity"] + 0.05, mean
    assert mean["registration"] > mean["identity"] + 0.05, mean
    assert mean["trained"] > mean["untrained"] + 0.3, mean
    assert scores["trained"][-1] > scores["identity"][-1], scores  # the held-out image too


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


def test_bundle_round_trip_gives_identical_labels(trained, tmp_path):
    image, _ = trained["cases"][3]
    # before: the trained weights as training left them in the work folder
    model, values = load_network(trained["work"] / NETWORK_MEMBER)
    bundle = load_bundle(trained["bundle"])
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


def test_apply_returns_labels_on_the_image_grid_with_the_bundle_segments(trained):
    bundle = load_bundle(trained["bundle"])
    image, _ = phantom(shape=(24, 36, 40), spacing=(1.2, 1.3, 2.6), direction=(0, 1, 0, -1, 0, 0, 0, 0, 1), seed=5)
    labels = apply_rrl(bundle, image)
    assert labels.volume.same_grid(image)
    assert labels.array.shape == (24, 36, 40)
    assert set(np.unique(labels.array)) <= {0, 1, 2}
    names = {s.value: (s.name, s.color) for s in labels.segments}
    assert names == {1: ("core", (0.9, 0.2, 0.2)), 2: ("side", (0.2, 0.4, 0.9))}
    assert bundle.engine == "rrl_medsam" and bundle.parameters["label_values"] == [1, 2]
    assert bundle.parameters["iterations"] == ITERATIONS and bundle.parameters["seconds_per_iteration"] > 0


def test_apply_refuses_a_registration_bundle_and_unknown_outputs(trained, tmp_path):
    image, labels = phantom()
    bundle = load_bundle(write_bundle(tmp_path / "b", name="reg", atlases=[(image, labels)]))
    with pytest.raises(ValueError, match="rrl_medsam"):
        apply_rrl(bundle, image)
    with pytest.raises(ValueError, match="output must be one of"):
        apply_rrl(load_bundle(trained["bundle"]), image, output="fusion")
