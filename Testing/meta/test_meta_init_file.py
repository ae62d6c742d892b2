"""INIT.pt files: a save/load round trip predicts identically; inits for another base model or
architecture, corrupt files and foreign files are refused with one line."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import numpy as np
import torch

from SAMFewShotLib.meta.config import MetaConfig
from SAMFewShotLib.meta.init_file import MetaInit, load_init, save_init
from SAMFewShotLib.meta.load import load_meta_model
from SAMFewShotLib.meta.slices import prepare
from SAMFewShotLib.sam.preprocess import Preprocessing
from Testing.meta import meta_cases

CONFIG = MetaConfig(steps=3, learning_rate=5e-3, adapter_rank=8)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("init")
    checkpoint = str(meta_cases.small_sam_checkpoint(folder / "small.pth", seed=5))
    meta = load_meta_model(checkpoint, config=CONFIG)
    generator = torch.Generator().manual_seed(0)
    state = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in meta.start.items()}
    rates = torch.rand(CONFIG.steps, len(state), generator=generator) * 1e-2
    init = MetaInit(
        config=CONFIG, names=list(state), state=state, learning_rates=rates, base_sha256=meta.loaded.sha256,
        base_name=meta.loaded.name, model_type=meta.loaded.model_type,
        architecture=meta.loaded.architecture.describe(), training={"iterations": 0},
    )
    path = save_init(init, folder / "init.pt")
    return folder, checkpoint, init, path


def logits_of(meta) -> torch.Tensor:
    volume, truth = meta_cases.textured_case(3, shape=(6, 32, 32))
    net = meta.network
    prep = Preprocessing.for_volume(volume)
    query, support = (prepare(net.sam, volume, 0, z, prep, truth[z]) for z in (2, 3))
    with torch.no_grad():
        return net.decode_example(
            net.features(net.embed([query.item])), query, net.features(net.embed([support.item])), support
        )


def test_round_trip_gives_identical_tensors_rates_and_predictions(made):
    folder, checkpoint, init, path = made
    loaded = load_init(path)
    assert loaded.config == CONFIG and loaded.names == init.names and loaded.training == {"iterations": 0}
    assert torch.equal(loaded.learning_rates, init.learning_rates)
    direct = load_meta_model(checkpoint, config=CONFIG)
    direct.network.load_trainable_state(init.state)
    from_file = load_meta_model(checkpoint, init=path)
    assert torch.equal(from_file.learning_rates, init.learning_rates) and not from_file.is_plain
    assert torch.equal(logits_of(from_file), logits_of(direct))
    assert not torch.equal(logits_of(from_file), logits_of(load_meta_model(checkpoint, config=CONFIG)))


def test_steps_override_repeats_the_last_learned_step_size(made):
    _, checkpoint, init, path = made
    longer = load_meta_model(checkpoint, init=path, steps=5).learning_rates
    assert longer.shape[0] == 5 and torch.equal(longer[3], init.learning_rates[-1])


def one_line_error(call, match: str) -> str:
    with pytest.raises(ValueError, match=match) as error:
        call()
    assert "\n" not in str(error.value)
    return str(error.value)


def test_an_init_for_another_checkpoint_of_the_same_architecture_is_refused(made):
    folder, _, _, path = made
    other = meta_cases.small_sam_checkpoint(folder / "other.pth", seed=6)
    message = one_line_error(
        lambda: load_meta_model(str(other), init=path), "another checkpoint of the same architecture"
    )
    assert "base model small " in message and "other.pth" in message


def test_an_init_for_another_architecture_is_refused(made):
    folder, _, _, path = made
    wider = meta_cases.small_sam_checkpoint(folder / "wider.pth", seed=5, embed_dim=24)
    one_line_error(lambda: load_meta_model(str(wider), init=path), "another architecture")


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "not a readable meta init file"),
        (b"garbage" * 50, "not a readable meta init file"),
        (None, "is not a meta init file"),
    ],
)
def test_corrupt_and_foreign_files_are_refused(made, tmp_path, content, match):
    _, checkpoint, _, path = made
    bad = tmp_path / "bad.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, bad)
    else:
        bad.write_bytes(content)
    one_line_error(lambda: load_init(bad), match)


def test_a_truncated_init_is_refused(made, tmp_path):
    _, _, _, path = made
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    one_line_error(lambda: load_init(bad), "not a readable meta init file")


def test_a_missing_init_is_refused(tmp_path):
    one_line_error(lambda: load_init(tmp_path / "none.pt"), "not found")


def test_a_checkpoint_is_not_an_init(made):
    _, checkpoint, _, _ = made
    one_line_error(lambda: load_init(checkpoint), "is not a meta init file")


def test_inconsistent_rates_are_refused(made):
    _, _, init, _ = made
    with pytest.raises(ValueError, match="learning_rates must have shape"):
        MetaInit(**{**init.__dict__, "learning_rates": np.zeros(2)})


def test_an_init_of_the_previous_network_is_refused_with_one_line(made, tmp_path):
    """Version 1 inits held the previous network (SAM's prompt encoder and mask decoder): never
    mis-loaded into the published SSM-SAM network (self-sampling prompt encoder + FMAD)."""
    _, checkpoint, _, path = made
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["version"] = 1
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    one_line_error(lambda: load_init(old), "version 1 meta init file; this samfewshot reads version 2")
    from SAMFewShotLib.engines.meta import MetaEngine

    one_line_error(lambda: MetaEngine(checkpoint, init=str(old)), "version 1")
