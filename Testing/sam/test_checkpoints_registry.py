"""The registry of known checkpoints: well-formed entries, look-ups, digest matching."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from SAMFewShotLib.sam import checkpoints
from SAMFewShotLib.sam.checkpoints import REGISTRY, Checkpoint, get_checkpoint, match_digest


def test_registry_lists_sam_medsam_and_mobile_sam():
    assert {"sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam_vit_b", "mobile_sam"} <= set(REGISTRY)
    assert {e.model_type for e in REGISTRY.values()} == {
        "vit_b", "vit_l", "vit_h", "vit_t", "efficientvit_l0", "efficientvit_l1", "efficientvit_l2",
        "efficientvit_xl0", "efficientvit_xl1",
    }
    assert {e.family for e in REGISTRY.values()} == {"sam", "medsam", "mobile_sam", "efficientvit_sam"}


@pytest.mark.parametrize("entry", list(REGISTRY.values()), ids=list(REGISTRY))
def test_entry_is_complete(entry: Checkpoint):
    assert entry.name in REGISTRY and REGISTRY[entry.name] is entry
    assert urlsplit(entry.url).scheme == "https"
    assert entry.url.endswith(entry.filename)
    assert entry.licence
    # no published byte size (EfficientViT-SAM): the published SHA-256 alone identifies the file
    assert (entry.size is not None and entry.size > 10_000_000) or entry.sha256 is not None
    assert entry.has_reference_digest


def test_meta_file_names_carry_the_md5_prefix():
    # sam_vit_b_01ec64.pth: Meta names each file after the first six hex digits of its MD5
    for name in ("sam_vit_b", "sam_vit_l", "sam_vit_h"):
        entry = REGISTRY[name]
        suffix = re.search(r"_([0-9a-f]{6})\.pth$", entry.filename).group(1)
        assert entry.md5.startswith(suffix)
        assert entry.sha256 is not None


def test_medsam_has_no_published_sha256_but_an_md5():
    entry = REGISTRY["medsam_vit_b"]
    assert entry.sha256 is None and entry.md5 is not None


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="Unknown checkpoint name 'sam_vit_q'.*sam_vit_b"):
        get_checkpoint("sam_vit_q")


def test_bad_entries_are_rejected():
    with pytest.raises(ValueError, match="Model type"):
        Checkpoint("x", "vit_q", "sam", "https://a/x.pth", None, None, "", "x.pth")
    with pytest.raises(ValueError, match="sha256"):
        Checkpoint("x", "vit_b", "sam", "https://a/x.pth", "ABC", None, "", "x.pth")


def test_match_digest_uses_sha256_then_md5_then_trusts_first_use():
    with_sha = Checkpoint("a", "vit_b", "sam", "https://h/a.pth", "0" * 64, 1, "", "a.pth")
    assert match_digest(with_sha, "0" * 64) is True
    assert match_digest(with_sha, "1" * 64) is False
    with_md5 = Checkpoint("b", "vit_b", "sam", "https://h/b.pth", None, 1, "", "b.pth", md5="2" * 32)
    assert match_digest(with_md5, "1" * 64, "2" * 32) is True
    assert match_digest(with_md5, "1" * 64, "3" * 32) is False
    bare = Checkpoint("c", "vit_b", "sam", "https://h/c.pth", None, None, "", "c.pth")
    assert match_digest(bare, "1" * 64) is None


def test_lookups_by_filename_and_size():
    assert checkpoints.entry_for_filename("sam_vit_b_01ec64.pth") is REGISTRY["sam_vit_b"]
    assert checkpoints.entry_for_filename("other.pth") is None
    unsized = [e for e in REGISTRY.values() if e.size is None and e.sha256 is not None]  # matched by digest alone
    assert checkpoints.entries_of_size(REGISTRY["mobile_sam"].size) == [REGISTRY["mobile_sam"], *unsized]
