"""Test-time refinement of RRL-MedSAM's displacement (``atlas/rrl/refinement.py``) and its wiring
into ``apply_rrl``, ``apply_bundle`` and ``samfewshot atlas apply --rrl-refine``."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.atlas.apply import apply_bundle
from SAMFewShotLib.atlas.bundle import load_bundle, write_bundle
from SAMFewShotLib.atlas.rrl.apply import apply_rrl
from SAMFewShotLib.atlas.rrl.refinement import STAGE, check_refine_iterations, refine_flow
from SAMFewShotLib.atlas.rrl.spatial_transformer import warp
from SAMFewShotLib.atlas.rrl.training import TrainSettings, train_rrl_bundle
from SAMFewShotLib.cli.main import main
from SAMFewShotLib.errors import InputError
from SAMFewShotLib.metrics import dice
from SAMFewShotLib.progress import Cancelled, CancelToken
from SAMFewShotLib.volume_io import write_volume
from Testing.atlas.rrl.rrl_synthetic import phantom, targets

SHIFT = 2.5  # voxels along x between the moving and the fixed blob


def _blob(centre_x: float, size: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, mask) (1, 1, size, size, size): a smooth ellipsoidal blob plus a fainter second one
    (textured enough for the local NCC), and the main blob's mask."""
    z, y, x = torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * 3, indexing="ij")
    r2 = ((z - 12) / 5) ** 2 + ((y - 11) / 4) ** 2 + ((x - centre_x) / 6) ** 2
    second = ((z - 8) / 3) ** 2 + ((y - 17) / 3) ** 2 + ((x - centre_x - 3) / 4) ** 2
    image = torch.exp(-r2) + 0.5 * torch.exp(-second)
    return image[None, None], (r2 <= 1)[None, None].float()


def test_refinement_recovers_a_known_shift_and_leaves_its_inputs_alone():
    moving, moving_mask = _blob(10.0)
    fixed, fixed_mask = _blob(10.0 + SHIFT)
    flow = torch.zeros(1, 3, 24, 24, 24)
    copies = [t.clone() for t in (flow, moving, fixed)]
    calls = []
    refined = refine_flow(flow, moving, fixed, 150, step=0.1, progress=lambda *a: calls.append(a))
    for original, copy in zip((flow, moving, fixed), copies):
        assert torch.equal(original, copy)  # inputs untouched
    assert refined.shape == flow.shape and not refined.requires_grad
    before = dice(moving_mask[0, 0].numpy() > 0.5, fixed_mask[0, 0].numpy() > 0.5)
    after = dice(warp(moving_mask, refined)[0, 0].numpy() > 0.5, fixed_mask[0, 0].numpy() > 0.5)
    # measured: 0.699 -> 0.911, mean x displacement inside -2.06 (window 9, 1 thread)
    assert after > before + 0.15 and after > 0.88, (before, after)
    # fixed(p) = moving(p - shift along x): the displacement inside the blob points back by the shift
    inside = fixed_mask[0, 0] > 0
    assert refined[0, 2][inside].mean() == pytest.approx(-SHIFT, abs=0.7)
    assert refined[0, :2][:, inside].abs().mean() < 0.5
    assert calls[0] == (STAGE, 0, 150) and calls[-1] == (STAGE, 150, 150) and len(calls) == 151


def test_zero_iterations_return_a_copy_and_bad_counts_are_input_errors():
    moving, _ = _blob(10.0)
    flow = torch.full((1, 3, 24, 24, 24), 0.3)
    same = refine_flow(flow, moving, moving, 0)
    assert torch.equal(same, flow) and same is not flow
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(InputError, match="integer >= 0"):
            check_refine_iterations(bad)
    with pytest.raises(ValueError, match="one grid"):
        refine_flow(flow[:, :, :20], moving, moving, 1)


def test_refinement_stops_when_cancelled():
    moving, _ = _blob(10.0)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        refine_flow(torch.zeros(1, 3, 24, 24, 24), moving, moving, 5, cancel=token)


def test_refinement_runs_under_inference_mode():
    """apply_rrl computes the network's displacement in inference mode; refining it must still work."""
    moving, _ = _blob(10.0)
    fixed, _ = _blob(10.0 + SHIFT)
    with torch.inference_mode():
        flow = torch.zeros(1, 3, 24, 24, 24)
        refined = refine_flow(flow, moving.clone(), fixed.clone(), 3, ncc_window=5)
    assert refined.abs().sum() > 0


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rrl_refine")
    atlas_image, atlas_labels = phantom()
    cases = targets(2)
    path = train_rrl_bundle(
        atlas_image, atlas_labels, [image for image, _ in cases], folder / "rrl.zip", size=32, iterations=2,
        work_dir=folder / "work", device="cpu", settings=TrainSettings(augment=False, checkpoint_every=1000),
    )
    return {"bundle": path, "cases": cases, "folder": folder}


def test_apply_refines_the_registration_output_only(tiny_bundle):
    bundle = load_bundle(tiny_bundle["bundle"])
    image, _ = tiny_bundle["cases"][0]
    plain = apply_rrl(bundle, image, output="registration")
    stages = []
    refined = apply_rrl(
        bundle, image, output="registration", refine_iterations=20, progress=lambda s, d, t: stages.append((s, d, t))
    )
    assert refined.volume.same_grid(image) and set(np.unique(refined.array)) <= {0, 1, 2}
    assert (STAGE, 20, 20) in stages
    assert not np.array_equal(plain.array, refined.array)  # 20 steps move the 16^3 working-grid labels
    with pytest.raises(InputError, match="applies to the registration output"):
        apply_rrl(bundle, image, output="segmentation", refine_iterations=3)
    result = apply_bundle(bundle, image, rrl_output="registration", rrl_refine=20)
    np.testing.assert_array_equal(result.labels.array, refined.array)
    assert result.details["rrl_refine"] == 20


def test_apply_bundle_refuses_refinement_for_a_registration_bundle(tmp_path):
    image, labels = phantom()
    bundle = load_bundle(write_bundle(tmp_path / "b", name="reg", atlases=[(image, labels)]))
    with pytest.raises(InputError, match="refinement .* needs an rrl_medsam bundle"):
        apply_bundle(bundle, image, rrl_refine=5)


@pytest.mark.parametrize(
    "extra, message",
    [(["--rrl-refine", "3"], "applies to the registration output"),
     (["--rrl-output", "registration", "--rrl-refine", "-2"], "integer >= 0")],
)
def test_the_command_refuses_bad_refinement_with_one_line(tiny_bundle, capsys, extra, message):
    folder = tiny_bundle["folder"]
    image = folder / "case.nii.gz"
    write_volume(tiny_bundle["cases"][1][0], image)
    output = folder / "out.nii.gz"
    argv = ["atlas", "apply", str(image), str(tiny_bundle["bundle"]), "-o", str(output), "--progress", "none", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("samfewshot: error:") and message in err[0], err
    assert not output.exists()


def test_the_command_refines_and_reports_it(tiny_bundle, tmp_path):
    image = tmp_path / "case.nii.gz"
    write_volume(tiny_bundle["cases"][1][0], image)
    output, report = tmp_path / "out.nii.gz", tmp_path / "report.json"
    argv = ["atlas", "apply", str(image), str(tiny_bundle["bundle"]), "-o", str(output), "--progress", "none",
            "--rrl-output", "registration", "--rrl-refine", "2", "--report", str(report)]
    assert main(argv) == 0
    details = json.loads(report.read_text())["details"]
    assert (details["rrl_output"], details["rrl_refine"]) == ("registration", 2)
