"""Tests of batched slice encoding through the embedding cache (tiny random-weight SAM)."""

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.progress import Cancelled, CancelToken
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache, volume_digest
from SAMFewShotLib.sam.encoder import STAGE, encode_slices
from SAMFewShotLib.sam.preprocess import Preprocessing
from SAMFewShotLib.volume import Volume
from Testing.phantoms import ellipsoid, render
from Testing.tiny_sam import build_tiny_sam

SHAPE = (6, 48, 40)  # (z, y, x)


@pytest.fixture(scope="module")
def sam():
    return build_tiny_sam()


@pytest.fixture(scope="module")
def volume():
    truth = ellipsoid((3, 24, 20), (2, 15, 12), SHAPE)
    return Volume(render(truth, seed=0), spacing=(1.0, 1.0, 3.0))


@pytest.fixture(scope="module")
def prep(volume):
    return Preprocessing.from_percentiles(volume)


def test_second_call_makes_no_encoder_call(sam, volume, prep):
    cache = EmbeddingCache.memory_only()
    first = encode_slices(sam, "tiny", volume, 0, [1, 2, 4], prep, cache, batch_size=2)
    assert (first.stats.encoder_calls, first.stats.slices_encoded, first.stats.cache_hits) == (2, 3, 0)
    again = encode_slices(sam, "tiny", volume, 0, [4, 2, 1], prep, cache, batch_size=2)
    assert (again.stats.encoder_calls, again.stats.slices_encoded, again.stats.cache_hits) == (0, 0, 3)
    assert list(again.embeddings) == [4, 2, 1]
    for index in (1, 2, 4):
        assert again[index] is first[index]
    partial = encode_slices(sam, "tiny", volume, 0, [2, 3], prep, cache)
    assert (partial.stats.encoder_calls, partial.stats.cache_hits) == (1, 1)


def test_batches_give_the_embeddings_of_single_slices(sam, volume, prep):
    batched = encode_slices(sam, "tiny", volume, 0, [0, 1], prep, batch_size=2)
    single = encode_slices(sam, "tiny", volume, 0, [0, 1], prep, batch_size=1)
    assert (batched.stats.encoder_calls, single.stats.encoder_calls) == (1, 2)
    for index in range(2):
        embedding = batched[index].embedding
        assert embedding.shape == (32, 64, 64) and embedding.dtype == torch.float32
        torch.testing.assert_close(embedding, single[index].embedding, rtol=0, atol=1e-5)
        assert (batched[index].original_size, batched[index].input_size) == ((48, 40), (1024, 853))


@pytest.fixture(scope="module")
def shared_cache(sam, volume, prep):
    """A cache holding slice 2 (axial) of ``volume``."""
    cache = EmbeddingCache.memory_only()
    assert encode_slices(sam, "tiny", volume, 0, [2], prep, cache).stats.encoder_calls == 1
    return cache


@pytest.mark.parametrize("change", ["content", "axis", "slice", "preprocessing", "model", "precision"])
def test_changing_any_key_part_is_a_miss(sam, volume, prep, shared_cache, change):
    cache = shared_cache
    args = dict(model_digest="tiny", volume=volume, axis=0, slices=[2], preprocessing=prep)
    changed = dict(args)
    if change == "content":
        array = volume.array.copy()
        array[0, 0, 0] += 1  # a voxel of another slice: the volume digest still changes
        changed["volume"] = volume.with_array(array)
    elif change == "axis":
        changed["axis"] = 1
    elif change == "slice":
        changed["slices"] = [3]
    elif change == "preprocessing":
        changed["preprocessing"] = Preprocessing("custom", prep.low, prep.high + 1)
    elif change == "model":
        changed["model_digest"] = "other"
    elif change == "precision":
        changed["dtype"] = torch.bfloat16
    assert encode_slices(sam, cache=cache, **changed).stats.encoder_calls == 1
    assert encode_slices(sam, cache=cache, **args).stats.encoder_calls == 0


def test_disk_cache_serves_a_new_process(sam, volume, prep, tmp_path):
    first = encode_slices(sam, "tiny", volume, 2, [5, 20], prep, EmbeddingCache(tmp_path), batch_size=2)
    fresh = EmbeddingCache(tmp_path)  # a new process: empty memory, same folder
    again = encode_slices(sam, "tiny", volume, 2, [5, 20], prep, fresh)
    assert again.stats.encoder_calls == 0 and fresh.stats.disk_hits == 2
    for index in (5, 20):
        torch.testing.assert_close(again[index].embedding, first[index].embedding, rtol=0, atol=0)
        # sagittal slices (z, y) = (6 x 3 mm, 48 x 1 mm): resampled to 18 x 48 square pixels
        assert again[index].slice_shape == (6, 48) and again[index].original_size == (18, 48)


def test_progress_per_batch_and_cancel_between_batches(sam, volume, prep):
    calls = []
    cancel = CancelToken()
    cache = EmbeddingCache.memory_only()

    def progress(stage, done, total):
        calls.append((stage, done, total))
        if done == 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        encode_slices(sam, "tiny", volume, 0, range(6), prep, cache, batch_size=2, progress=progress, cancel=cancel)
    assert calls == [(STAGE, 0, 6), (STAGE, 2, 6)]
    # the finished batch is cached
    assert encode_slices(sam, "tiny", volume, 0, [0, 1], prep, cache).stats.encoder_calls == 0


def test_embeddings_can_feed_a_trained_module(sam, volume, prep):
    embedding = encode_slices(sam, "tiny", volume, 0, [1], prep)[1].embedding
    assert not embedding.is_inference()
    layer = torch.nn.Conv2d(32, 1, 1)
    layer(embedding[None]).sum().backward()
    assert layer.weight.grad is not None


def test_bf16_embeddings_are_close_to_fp32(sam, volume, prep):
    fp32 = encode_slices(sam, "tiny", volume, 0, [1], prep)[1].embedding
    bf16 = encode_slices(sam, "tiny", volume, 0, [1], prep, dtype=torch.bfloat16)[1].embedding
    assert bf16.dtype == torch.float32
    relative = (bf16 - fp32).abs().max() / fp32.abs().max()
    assert 0 < relative < 0.05


def test_threads_are_restored(sam, volume, prep):
    before = torch.get_num_threads()
    encode_slices(sam, "tiny", volume, 0, [1], prep, num_threads=1)
    assert torch.get_num_threads() == before


def test_a_given_digest_is_used(sam, volume, prep):
    cache = EmbeddingCache.memory_only()
    encode_slices(sam, "tiny", volume, 0, [1], prep, cache, digest=volume_digest(volume))
    assert encode_slices(sam, "tiny", volume, 0, [1], prep, cache).stats.encoder_calls == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(slices=[6]), "Slice 6 is outside 0..5"),
        (dict(axis=3), "not 3"),
        (dict(batch_size=0), "batch_size"),
        (dict(dtype=torch.float64), "float64"),
        (dict(num_threads=0), "num_threads"),
    ],
)
def test_bad_arguments_are_named(sam, volume, prep, kwargs, message):
    args = dict(axis=0, slices=[1]) | kwargs
    with pytest.raises(ValueError, match=message):
        encode_slices(sam, "tiny", volume, preprocessing=prep, **args)
