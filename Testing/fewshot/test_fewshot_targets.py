"""Drawn masks in SAM's frames and masked average pooling (target embeddings)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.fewshot.targets import input_frame_mask, masked_average, pooled, valid_region
from SAMFewShotLib.sam.embedding_cache import SliceEmbedding


def record(slice_shape, original_size, input_size, channels: int = 4) -> SliceEmbedding:
    return SliceEmbedding(torch.zeros((channels, 64, 64)), original_size, input_size, slice_shape)


def test_a_square_slice_fills_the_whole_frame_in_proportion():
    mask = np.zeros((32, 32), bool)
    mask[:, :8] = True  # the left quarter
    frame = input_frame_mask(mask, record((32, 32), (32, 32), (1024, 1024)), 1024)
    assert frame.shape == (1024, 1024)
    assert float(frame[:, :240].min()) == 1.0 and float(frame[:, 272:].max()) == 0.0
    assert abs(float(frame.mean()) - 0.25) < 0.01


def test_non_square_pixels_keep_the_mask_fraction_and_leave_the_padding_empty():
    # 20 rows of 1.5 mm and 40 columns of 0.5 mm: the model grid is 60 x 40 (rows x cols)
    mask = np.zeros((20, 40), bool)
    mask[5:15, 10:30] = True  # a quarter of the slice
    frame = input_frame_mask(mask, record((20, 40), (60, 40), (1024, 683)), 1024)
    assert float(frame[:, 683:].abs().max()) == 0.0
    inside = frame[:, :683]
    assert abs(float(inside.mean()) - 0.25) < 0.01
    profile = inside.mean(dim=1)
    rows = torch.nonzero(profile >= profile.max() / 2)  # half-maximum edges (linear resampling blurs them)
    assert abs(int(rows.min()) - 256) <= 8 and abs(int(rows.max()) - 767) <= 8  # rows 5..15 of 20


def test_the_target_embedding_averages_the_cells_under_the_mask():
    embedding = torch.zeros((3, 64, 64))
    embedding[0, :, :16] = 2.0  # inside the mask
    embedding[1, :, 16:] = 5.0  # outside
    embedding[2] = 1.0  # everywhere
    weights = pooled(torch.cat([torch.ones((1024, 256)), torch.zeros((1024, 768))], dim=1), 64)
    assert torch.allclose(masked_average(embedding, weights), torch.tensor([2.0, 0.0, 1.0]))


def test_partial_cells_weigh_by_their_covered_area():
    embedding = torch.zeros((1, 64, 64))
    embedding[0, 0, 0], embedding[0, 0, 1] = 1.0, 4.0
    frame = torch.zeros((1024, 1024))
    frame[:16, :16] = 1.0  # all of cell (0, 0)
    frame[:16, 16:20] = 1.0  # a quarter of cell (0, 1)
    assert torch.allclose(masked_average(embedding, pooled(frame, 64)), torch.tensor([(1.0 + 0.25 * 4.0) / 1.25]))


def test_an_empty_mask_has_no_target_embedding():
    with pytest.raises(ValueError, match="empty mask"):
        masked_average(torch.ones((2, 64, 64)), torch.zeros((64, 64)))


def test_a_mask_of_another_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(10, 10\)"):
        input_frame_mask(np.ones((10, 10), bool), record((20, 40), (60, 40), (1024, 683)), 1024)


def test_the_valid_region_is_the_image_part_of_the_output():
    valid = valid_region(record((20, 40), (60, 40), (1024, 683)), 1024, 256)
    assert valid.shape == (256, 256) and bool(valid[:, :171].all()) and not bool(valid[:, 171:].any())
