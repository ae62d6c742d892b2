"""Tests of the embedding cache: keys, volume digest, LRU memory budget, disk files."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.sam.embedding_cache import (
    EmbeddingCache,
    EmbeddingKey,
    SliceEmbedding,
    default_embedding_dir,
    volume_digest,
)
from SAMFewShotLib.volume import Volume


def key(**changes) -> EmbeddingKey:
    base = EmbeddingKey("ab" * 32, 0, 3, "v1;window=soft-tissue", "cd" * 32, "fp32")
    return dataclasses.replace(base, **changes)


def entry(seed=0, channels=8) -> SliceEmbedding:
    generator = torch.Generator().manual_seed(seed)
    return SliceEmbedding(torch.randn(channels, 64, 64, generator=generator), (101, 122), (848, 1024), (101, 122))


def test_volume_digest_depends_on_content_dtype_shape_and_spacing():
    array = np.random.default_rng(0).integers(0, 100, size=(4, 5, 6)).astype(np.int16)
    base = volume_digest(Volume(array, spacing=(1, 1, 2)))
    assert base == volume_digest(Volume(array.copy(), spacing=(1.0, 1.0, 2.0)))
    changed = array.copy()
    changed[1, 2, 3] += 1
    others = [
        Volume(changed, spacing=(1, 1, 2)),
        Volume(array.astype(np.int32), spacing=(1, 1, 2)),
        Volume(array.reshape(4, 6, 5), spacing=(1, 1, 2)),
        Volume(array, spacing=(1, 1, 2.5)),
    ]
    assert all(volume_digest(v) != base for v in others)


def test_volume_digest_of_a_view_equals_that_of_its_copy():
    array = np.random.default_rng(1).normal(size=(6, 7, 8)).astype(np.float32)
    view = np.moveaxis(array, 2, 0)
    assert not view.flags.c_contiguous
    assert volume_digest(Volume(view)) == volume_digest(Volume(np.ascontiguousarray(view)))


def test_every_key_part_gives_a_different_file():
    changes = [dict(volume_digest="ef" * 32), dict(axis=1), dict(slice_index=4), dict(preprocessing="v1;window=lung"),
               dict(model_digest="tiny"), dict(precision="bf16")]
    paths = {EmbeddingCache(directory="/nowhere").path(key(**c)) for c in [{}] + changes}
    assert len(paths) == len(changes) + 1


def test_memory_cache_hits_and_misses(tmp_path):
    cache = EmbeddingCache(tmp_path, disk=False)
    assert cache.get(key()) is None
    cache.put(key(), entry())
    assert cache.get(key()) is not None and cache.get(key(slice_index=4)) is None
    assert (cache.stats.memory_hits, cache.stats.disk_hits, cache.stats.misses) == (1, 0, 2)
    assert not any(tmp_path.iterdir())


def test_memory_budget_evicts_the_least_recently_used():
    size = entry().nbytes
    cache = EmbeddingCache.memory_only(max_memory_bytes=2 * size)
    for index in range(3):
        cache.put(key(slice_index=index), entry(index))
        cache.get(key(slice_index=0))  # keep slice 0 recent
    assert cache.memory_bytes == 2 * size
    assert cache.get(key(slice_index=1)) is None
    assert cache.get(key(slice_index=0)) is not None and cache.get(key(slice_index=2)) is not None


def test_disk_cache_survives_a_new_cache_object(tmp_path):
    original = entry(5)
    EmbeddingCache(tmp_path).put(key(), original)
    fresh = EmbeddingCache(tmp_path)
    loaded = fresh.get(key())
    assert fresh.stats.disk_hits == 1 and fresh.stats.misses == 0
    torch.testing.assert_close(loaded.embedding, original.embedding, rtol=0, atol=0)
    assert (loaded.original_size, loaded.input_size, loaded.slice_shape) == ((101, 122), (848, 1024), (101, 122))
    assert fresh.get(key()) is loaded and fresh.stats.memory_hits == 1
    assert [p.name for p in tmp_path.rglob(".*.tmp")] == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_file_is_a_miss_and_is_rewritten(tmp_path, damage):
    cache = EmbeddingCache(tmp_path)
    cache.put(key(), entry())
    path = cache.path(key())
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a zip" * 100, "empty": b""}[damage])
    fresh = EmbeddingCache(tmp_path)
    assert fresh.get(key()) is None
    assert (fresh.stats.misses, fresh.stats.corrupt) == (1, 1) and not path.exists()
    fresh.put(key(), entry())
    assert EmbeddingCache(tmp_path).get(key()) is not None


def test_a_file_of_another_key_is_a_miss(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put(key(), entry())
    other = key(model_digest="other")
    cache.path(other).parent.mkdir(parents=True, exist_ok=True)
    cache.path(other).write_bytes(cache.path(key()).read_bytes())
    assert EmbeddingCache(tmp_path).get(other) is None


def test_default_directory_is_under_samfewshot_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path))
    assert default_embedding_dir() == tmp_path / "embeddings"
    assert EmbeddingCache().directory == tmp_path / "embeddings"
    monkeypatch.delenv("SAMFEWSHOT_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert str(default_embedding_dir()).endswith("embeddings")


def test_negative_memory_budget_is_refused():
    with pytest.raises(ValueError, match="-1"):
        EmbeddingCache.memory_only(max_memory_bytes=-1)
