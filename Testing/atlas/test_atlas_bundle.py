"""Atlas bundles: round trips (zip and folder) and one-line errors for bad bundles."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from SAMFewShotLib.atlas.bundle import FORMAT_VERSION, AtlasLabel, bundle_engine, is_bundle, load_bundle, write_bundle
from Testing.atlas.atlas_phantom import LIVER_TERMINOLOGY, phantom

OBLIQUE = (0.0, -1.0, 0.0, 0.8, 0.0, 0.6, -0.6, 0.0, 0.8)


@pytest.fixture(scope="module")
def atlases():
    first = phantom((12, 14, 16), spacing=(1.5, 2.0, 2.5), origin=(3.0, -7.0, 11.0), direction=OBLIQUE)
    second = phantom((10, 12, 14), spacing=(1.0, 1.0, 3.0), seed=1)
    return [first, second]


@pytest.fixture(params=["zip", "folder"])
def bundle_path(request, tmp_path, atlases):
    output = tmp_path / ("atlas.zip" if request.param == "zip" else "atlas")
    weights = tmp_path / "network.pt"
    weights.write_bytes(b"not really a network" * 10)
    return write_bundle(output, name="abdomen", atlases=atlases, modality="MR", engine="registration",
                        parameters={"grid_spacing_mm": 20.0}, weights={"network.pt": weights})


def test_round_trip_keeps_images_labels_and_geometry(bundle_path, atlases):
    bundle = load_bundle(bundle_path)
    assert bundle.n_atlases == 2
    for index, (image, labels) in enumerate(atlases):
        back_image, back_labels = bundle.atlas(index)
        assert back_image.same_grid(image) and back_labels.volume.same_grid(image)
        np.testing.assert_allclose(back_image.array, image.array)
        np.testing.assert_array_equal(back_labels.array, labels.array)


def test_round_trip_keeps_names_colours_terminology_and_settings(bundle_path):
    bundle = load_bundle(bundle_path)
    assert [(label.value, label.name) for label in bundle.labels] == [(1, "liver"), (2, "spleen"), (3, "kidney")]
    liver = bundle.labels[0]
    assert liver.color == (0.87, 0.51, 0.40) and liver.terminology == LIVER_TERMINOLOGY
    _, labels = bundle.atlas(0)
    assert labels.segment(1).terminology == LIVER_TERMINOLOGY and labels.segment(2).name == "spleen"
    assert (bundle.name, bundle.modality, bundle.engine) == ("abdomen", "MR", "registration")
    assert bundle.parameters == {"grid_spacing_mm": 20.0}
    assert bundle.normalisation["method"] == "percentile"


def test_info_lists_what_the_contract_says(bundle_path):
    info = load_bundle(bundle_path).info()
    assert info["format_version"] == FORMAT_VERSION and info["atlases"] == 2
    assert info["labels"][0] == {
        "value": 1,
        "name": "liver",
        "color": [0.87, 0.51, 0.40],
        "terminology": LIVER_TERMINOLOGY,
    }
    assert [w["member"] for w in info["weights"]] == ["network.pt"] and len(info["weights"][0]["sha256"]) == 64
    json.dumps(info)


def test_weights_come_back_byte_for_byte(bundle_path, tmp_path):
    path = load_bundle(bundle_path).weights_path("network.pt")
    assert path.read_bytes() == (tmp_path / "network.pt").read_bytes()
    with pytest.raises(ValueError, match="no weights member 'other.pt'"):
        load_bundle(bundle_path).weights_path("other.pt")


def test_explicit_labels_override_the_segment_tables(tmp_path, atlases):
    labels = [AtlasLabel(1, "hepar", (1.0, 0.0, 0.0), "x~y"), AtlasLabel(2, "lien", (0.0, 1.0, 0.0)),
              AtlasLabel(3, "ren", (0.0, 0.0, 1.0))]
    bundle = load_bundle(write_bundle(tmp_path / "b.zip", name="n", atlases=atlases[:1], labels=labels))
    assert bundle.labels == tuple(labels)


def test_an_existing_bundle_folder_is_replaced_and_other_folders_are_refused(tmp_path, atlases):
    write_bundle(tmp_path / "b", name="first", atlases=atlases[:1])
    write_bundle(tmp_path / "b", name="second", atlases=atlases)
    assert load_bundle(tmp_path / "b").name == "second" and load_bundle(tmp_path / "b").n_atlases == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and holds no atlas bundle"):
        write_bundle(tmp_path / "other", name="x", atlases=atlases[:1])
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_is_bundle(tmp_path, atlases):
    assert is_bundle(write_bundle(tmp_path / "b.zip", name="n", atlases=atlases[:1]))
    (tmp_path / "x.zip").write_bytes(b"PK not a zip")
    assert not is_bundle(tmp_path / "x.zip") and not is_bundle(tmp_path) and not is_bundle(tmp_path / "none")


def test_bundle_engine_reads_the_manifest_without_loading_the_bundle(bundle_path, tmp_path):
    assert bundle_engine(bundle_path) == "registration"
    (tmp_path / "x.zip").write_bytes(b"PK not a zip")
    with zipfile.ZipFile(tmp_path / "no_manifest.zip", "w") as archive:
        archive.writestr("other.txt", "x")
    with zipfile.ZipFile(tmp_path / "bad_json.zip", "w") as archive:
        archive.writestr("manifest.json", "{not json")
    for path in ("x.zip", "no_manifest.zip", "bad_json.zip", "none", "."):
        assert bundle_engine(tmp_path / path) is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": ""}, "name must be a non-empty string"),
        ({"engine": "magic"}, "engine must be one of"),
        ({"atlases": []}, "at least one"),
        ({"normalisation": {"method": "clip", "low": 5, "high": 1}}, "below"),
        ({"weights": {"../evil.pt": "x"}}, "plain file name"),
        ({"labels": [AtlasLabel(1, "a", (0, 0, 0)), AtlasLabel(1, "b", (0, 0, 0))]}, "unique"),
    ],
)
def test_bad_write_arguments_are_refused(tmp_path, atlases, kwargs, message):
    arguments = {"name": "n", "atlases": atlases[:1], **kwargs}
    with pytest.raises(ValueError, match=message):
        write_bundle(tmp_path / "b.zip", **arguments)
    assert not (tmp_path / "b.zip").exists()


def test_labels_on_another_grid_are_refused(tmp_path, atlases):
    (image, _), (_, other_labels) = atlases
    with pytest.raises(ValueError, match="atlas 0 labels grid"):
        write_bundle(tmp_path / "b.zip", name="n", atlases=[(image, other_labels)])


@pytest.mark.parametrize("bad", [(1.2, 0.0, 0.0), (0.1, 0.2), "red"])
def test_bad_colours_are_refused(bad):
    with pytest.raises(ValueError, match="colour must be 3 numbers"):
        AtlasLabel(1, "x", bad)


# Bad bundles: one line each -----------------------------------------------------------------------
def _folder_bundle(tmp_path, atlases):
    return write_bundle(tmp_path / "bundle", name="n", atlases=atlases[:1])


def _edit_manifest(folder, change):
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _one_line_error(path, match):
    with pytest.raises(ValueError, match=match) as error:
        load_bundle(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_wrong_version(tmp_path, atlases):
    folder = _folder_bundle(tmp_path, atlases)
    _edit_manifest(folder, lambda m: m.update(format_version=99))
    _one_line_error(folder, "format version 99 is not supported")


def test_missing_member(tmp_path, atlases):
    folder = _folder_bundle(tmp_path, atlases)
    (folder / "atlases" / "atlas_0_labels.nii.gz").unlink()
    _one_line_error(folder, "missing member atlases/atlas_0_labels.nii.gz")


def test_missing_manifest(tmp_path, atlases):
    folder = _folder_bundle(tmp_path, atlases)
    (folder / "manifest.json").unlink()
    _one_line_error(folder, "missing member manifest.json")


def test_hash_mismatch(tmp_path, atlases):
    folder = _folder_bundle(tmp_path, atlases)
    member = folder / "atlases" / "atlas_0_image.nii.gz"
    data = member.read_bytes()
    member.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    _one_line_error(folder, "member atlases/atlas_0_image.nii.gz is corrupt: its sha256")


def test_bad_json(tmp_path, atlases):
    folder = _folder_bundle(tmp_path, atlases)
    (folder / "manifest.json").write_text('{"format_version": 1,')
    _one_line_error(folder, "manifest.json is not valid JSON")


def test_missing_field(tmp_path, atlases):
    folder = _folder_bundle(tmp_path, atlases)
    _edit_manifest(folder, lambda m: m.pop("labels"))
    _one_line_error(folder, "manifest.json has no 'labels'")


def test_member_outside_the_bundle(tmp_path, atlases):
    folder = _folder_bundle(tmp_path, atlases)

    def escape(manifest):
        manifest["atlases"][0]["image"] = "../image.nii.gz"
        manifest["sha256"]["../image.nii.gz"] = "0" * 64

    _edit_manifest(folder, escape)
    _one_line_error(folder, "relative paths inside the bundle")


def test_zip_with_a_corrupt_member_and_a_non_zip(tmp_path, atlases):
    folder = _folder_bundle(tmp_path, atlases)
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for file in folder.rglob("*"):
            if file.is_file():
                data = file.read_bytes()
                if file.name == "atlas_0_labels.nii.gz":
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                handle.writestr(file.relative_to(folder).as_posix(), data)
    _one_line_error(archive, "atlas_0_labels.nii.gz is corrupt")
    (tmp_path / "junk.zip").write_bytes(b"junk")
    _one_line_error(tmp_path / "junk.zip", "not a readable zip file")
    _one_line_error(tmp_path / "absent.zip", "no such atlas bundle")


def test_the_zip_extraction_lasts_until_close(tmp_path, atlases):
    with load_bundle(write_bundle(tmp_path / "b.zip", name="n", atlases=atlases[:1])) as bundle:
        root = bundle.root
        assert (root / "manifest.json").exists() is False and (root / "atlases").is_dir()
    assert not root.exists()
    folder = write_bundle(tmp_path / "f", name="n", atlases=atlases[:1])
    load_bundle(folder).close()
    assert (folder / "manifest.json").is_file()
