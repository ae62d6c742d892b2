"""Stage-1 distillation: the lightweight encoder learns a (tiny) SAM teacher's embeddings."""

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.atlas.rrl.distillation import distillation_loss, distillation_slices, prepare_distillation
from SAMFewShotLib.atlas.rrl.lightweight_encoder import LightweightEncoder
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache
from SAMFewShotLib.sam.model_loading import load_sam
from SAMFewShotLib.volume import Volume
from Testing.tiny_sam import save_tiny_checkpoint


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = save_tiny_checkpoint(tmp_path_factory.mktemp("teacher") / "tiny.pth", seed=3)
    sam, loaded = load_sam(path)
    return sam, loaded.sha256


def _volumes():
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, 32)] * 3, indexing="ij")
    blob = (z**2 + y**2 + x**2 < 0.4).astype(np.float32)
    return [
        Volume(np.clip(0.6 * blob + 0.1 * rng.random((32, 32, 32)), 0, 1).astype(np.float32), (2.0, 2.0, 2.0)),
        Volume(np.clip(0.4 * np.roll(blob, 3, 2) + 0.2, 0, 1).astype(np.float32), (2.0, 2.0, 2.0)),
    ]


def test_distillation_lowers_the_mse_to_the_teacher(teacher):
    sam, digest = teacher
    dataset = prepare_distillation(sam, digest, _volumes(), slices_per_volume=2, cache=EmbeddingCache.memory_only())
    # the teacher's 64 x 64 embeddings pooled to the student's neck grid of a 32-pixel slice (2 x 2)
    assert len(dataset) == 4 and tuple(dataset.embeddings.shape) == (4, 32, 2, 2)
    torch.manual_seed(0)
    student = LightweightEncoder(embed_dim=32, widths=(8, 8, 16, 16), depths=(0, 1, 1, 1))
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    everything = list(range(len(dataset)))
    with torch.no_grad():
        before = float(distillation_loss(student, dataset, everything))
    for step in range(12):
        loss = distillation_loss(student, dataset, [step % len(dataset)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = float(distillation_loss(student, dataset, everything))
    assert after < 0.5 * before


def test_teacher_embeddings_come_from_the_cache_the_second_time(teacher, tmp_path):
    sam, digest = teacher
    first = prepare_distillation(sam, digest, _volumes()[:1], 2, EmbeddingCache(tmp_path / "embeddings"))
    again = EmbeddingCache(tmp_path / "embeddings")  # a new process: disk only
    second = prepare_distillation(sam, digest, _volumes()[:1], 2, again)
    assert (again.stats.disk_hits, again.stats.misses) == (2, 0)
    torch.testing.assert_close(first.embeddings, second.embeddings)


def test_the_distilled_embedding_is_the_3d_pyramids_coarsest_level(teacher):
    """What stage 1 trains (the neck on working-grid slices) is what the 3D model consumes."""
    from SAMFewShotLib.atlas.rrl.distillation import student_input
    from SAMFewShotLib.atlas.rrl.volume_features import encode_slices, volume_pyramid

    sam, digest = teacher
    volume = _volumes()[0]
    dataset = prepare_distillation(sam, digest, [volume], slices_per_volume=2, cache=EmbeddingCache.memory_only())
    torch.manual_seed(0)
    student = LightweightEncoder(embed_dim=32, widths=(8, 8, 16, 16), depths=(0, 1, 1, 1))
    with torch.no_grad():
        distilled = encode_slices(student, student_input(dataset, [0]), "neck")[3]  # what the MSE trains
        loss = distillation_loss(student, dataset, [0])
        every_slice = encode_slices(student, torch.from_numpy(volume.array)[:, None], "neck")[3]
        pyramid = volume_pyramid(student, torch.from_numpy(volume.array)[None, None])
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(distilled, dataset.embeddings[:1]))
    torch.testing.assert_close(distilled[0], every_slice[dataset.items[0][1]])
    # the neck of the 32 slices, averaged over 16 slices along z, is the pyramid's coarsest level
    stacked = every_slice.permute(1, 0, 2, 3).reshape(32, 2, 16, 2, 2).mean(2)
    torch.testing.assert_close(pyramid[3][0], stacked, rtol=1e-4, atol=1e-5)


def test_a_teacher_without_distillation_iterations_is_refused(teacher, tmp_path):
    from SAMFewShotLib.atlas.rrl.training import TrainSettings, train_rrl_bundle
    from SAMFewShotLib.errors import InputError
    from Testing.atlas.rrl.rrl_synthetic import phantom, targets

    path = save_tiny_checkpoint(tmp_path / "tiny.pth", seed=3)
    image, labels = phantom()
    with pytest.raises(InputError, match="distill_iterations must be >= 1 when a teacher"):
        train_rrl_bundle(
            image, labels, [targets(1)[0][0]], tmp_path / "out.zip", size=32, iterations=1,
            teacher_checkpoint=str(path), settings=TrainSettings(distill_iterations=0),
        )


def test_slices_are_spread_over_the_central_part():
    assert distillation_slices(101, 3) == [10, 50, 90]
    with pytest.raises(ValueError, match="count"):
        distillation_slices(10, 0)


def test_training_with_a_teacher_runs_stage_1_then_copies_the_encoder(teacher, tmp_path):
    from SAMFewShotLib.atlas.bundle import load_bundle
    from SAMFewShotLib.atlas.rrl.checkpoint import load_checkpoint
    from SAMFewShotLib.atlas.rrl.training import TrainSettings, train_rrl_bundle
    from Testing.atlas.rrl.rrl_synthetic import phantom, targets

    path = save_tiny_checkpoint(tmp_path / "tiny.pth", seed=3)
    image, labels = phantom()
    stages = []
    settings = TrainSettings(distill_iterations=3, distill_slices=1, checkpoint_every=1000)
    bundle = load_bundle(train_rrl_bundle(
        image, labels, [targets(1)[0][0]], tmp_path / "out.zip", size=32, iterations=1, teacher_checkpoint=str(path),
        settings=settings, progress=lambda stage, done, total: stages.append((stage, done, total)),
    ))
    assert bundle.parameters["teacher_sha256"] == teacher[1]
    assert bundle.parameters["distill_iterations"] == 3 and bundle.parameters["distilled"] is True
    assert bundle.parameters["network"]["embed_dim"] == 32  # the tiny teacher's embedding channels
    assert ("RRL-MedSAM distillation", 3, 3) in stages and ("SAM teacher encoder", 2, 2) in stages
    assert (tmp_path / "out.zip.work" / "embeddings").is_dir()  # teacher embeddings cached for a resume
    state = load_checkpoint(tmp_path / "out.zip.work" / "checkpoint.pt")
    assert state["distill_iteration"] == 3 and state["iteration"] == 1
