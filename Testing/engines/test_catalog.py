"""The engine catalogue (engines/catalog.py) and the SAM engines' shared options (engines/options.py)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from SAMFewShotLib.engines import make_engine
from SAMFewShotLib.engines.catalog import (
    DEFAULT_REGISTRAR,
    DEFAULT_SUPPORT,
    ENGINE_NAMES,
    REGISTRAR_NAMES,
    WEIGHTED_ENGINES,
    WEIGHTLESS_ENGINES,
    EngineSpec,
    needs_weights,
    parse_engine,
    with_support,
)
from SAMFewShotLib.engines.options import SamOptions
from SAMFewShotLib.propagation.slice_registration import REGISTRARS


def test_every_listed_name_parses_into_a_known_family():
    families = {parse_engine(name).family for name in ENGINE_NAMES}
    assert families == set(WEIGHTLESS_ENGINES) | set(WEIGHTED_ENGINES)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("register", EngineSpec("register", "")),
        ("auto:elastix", EngineSpec("auto", "elastix")),
        ("sam:interpolate", EngineSpec("sam", "interpolate")),
        ("fewshot", EngineSpec("fewshot", "")),
    ],
)
def test_parse_engine_splits_family_and_option(spec, expected):
    assert parse_engine(spec) == expected


def test_defaults_are_filled_in():
    assert parse_engine("auto").registrar == DEFAULT_REGISTRAR
    assert parse_engine("register:tvl1").registrar == "tvl1"
    assert parse_engine("sam").coarse == "register"
    assert parse_engine("interpolate").registrar is None


@pytest.mark.parametrize("spec", ["", "sam:tvl1", "interpolate:dis", "register:nope", "fewshot:x", "unet"])
def test_unknown_names_are_refused_with_the_list(spec):
    with pytest.raises(ValueError, match="Engine must be one of auto, interpolate"):
        parse_engine(spec)


def test_weights_are_needed_by_the_sam_engines_only():
    assert [needs_weights(name) for name in ("sam:interpolate", "fewshot", "meta", "auto:dis", "interpolate")] == [
        True, True, True, False, False
    ]


def test_registrar_names_are_the_registrars():
    assert REGISTRAR_NAMES == tuple(REGISTRARS)


@pytest.mark.parametrize(
    "spec, backend", [("register", DEFAULT_REGISTRAR), ("register:tvl1", "tvl1"), ("auto:elastix", "elastix")]
)
def test_make_engine_uses_the_parsed_registrar(spec, backend):
    engine = make_engine(spec)
    register = engine.register if spec.startswith("auto") else engine
    assert register.backend == backend


def test_weightless_engines_refuse_options():
    with pytest.raises(ValueError, match="takes no options"):
        make_engine("interpolate", device="cpu")


def test_the_catalogue_imports_no_heavy_library():
    """Listed by the CLI parser and the Slicer module: no torch, ITK, OpenCV, scikit-image or SciPy."""
    code = (
        "import sys, SAMFewShotLib.engines.catalog; "
        "print(sorted({'torch', 'itk', 'cv2', 'skimage', 'scipy'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_sam_options_are_frozen(tmp_path):
    checkpoint = tmp_path / "sam.pth"
    checkpoint.write_bytes(b"weights")
    options = SamOptions("sam", str(checkpoint), device="cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.device = "cuda"  # type: ignore[misc]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"checkpoint": None}, "The meta engine needs --checkpoint"),
        ({"device": "tpu"}, "tpu"),
        ({"batch_size": 0}, "batch_size must be >= 1, not 0"),
        ({"checkpoint": "/nonexistent/sam.pth"}, "sam.pth"),
    ],
)
def test_sam_options_refuse_bad_values(tmp_path, fields, message):
    checkpoint = tmp_path / "sam.pth"
    checkpoint.write_bytes(b"weights")
    with pytest.raises(ValueError, match=message):
        SamOptions(**{"engine": "meta", "checkpoint": str(checkpoint), **fields})



# support modes (SAM-MPA cluster-centre propagation) -----------------------------------------------
@pytest.mark.parametrize(
    "spec, registrar, support",
    [
        ("register", DEFAULT_REGISTRAR, DEFAULT_SUPPORT),
        ("register:kcentroid", DEFAULT_REGISTRAR, "kcentroid"),
        ("auto:elastix-mpa:kcentroid-direct", "elastix-mpa", "kcentroid-direct"),
        ("register:tvl1", "tvl1", DEFAULT_SUPPORT),
    ],
)
def test_the_option_names_a_registrar_a_support_mode_or_both(spec, registrar, support):
    parsed = parse_engine(spec)
    assert (parsed.registrar, parsed.support) == (registrar, support)


@pytest.mark.parametrize(
    "spec", ["register:kcentroid:dis", "register:dis:dis", "auto:dis:kcentroid:x", "sam:kcentroid"]
)
def test_badly_combined_options_are_refused(spec):
    with pytest.raises(ValueError, match="Engine must be one of"):
        parse_engine(spec)


def test_make_engine_passes_the_support_mode_to_the_chain():
    assert make_engine("register:dis:kcentroid").settings.support == "kcentroid"
    assert make_engine("auto:kcentroid-direct").register.settings.support == "kcentroid-direct"
    assert make_engine("register").settings.support == DEFAULT_SUPPORT


@pytest.mark.parametrize(
    "spec, support, expected",
    [
        ("register", "kcentroid", "register:kcentroid"),
        ("auto:elastix", "kcentroid", "auto:elastix:kcentroid"),
        ("register:kcentroid", "kcentroid", "register:kcentroid"),
        ("interpolate", "nearest", "interpolate"),
        ("register:tvl1", None, "register:tvl1"),
    ],
)
def test_with_support_adds_the_mode_to_the_engine(spec, support, expected):
    assert with_support(spec, support) == expected


@pytest.mark.parametrize(
    "spec, support, message",
    [
        ("interpolate", "kcentroid", "--support is for the register and auto engines"),
        ("register:kcentroid", "nearest", "contradicts"),
        ("register", "closest", "'closest'"),
    ],
)
def test_with_support_refuses_what_cannot_hold(spec, support, message):
    with pytest.raises(ValueError, match=message):
        with_support(spec, support)
