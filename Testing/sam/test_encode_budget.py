"""``--max-encode N``: a SAM run that would encode more than N uncached slices is refused before
any encoder call, with one line naming the count, the cached slices and lighter options."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from SAMFewShotLib.cli.main import main
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache
from SAMFewShotLib.sam.encoder import EncodeBudgetExceeded, encode_slices
from SAMFewShotLib.sam.preprocess import Preprocessing
from SAMFewShotLib.volume_io import write_labels, write_volume
from Testing.sam.test_sam_engine import case  # noqa: F401 - the fixture
from Testing.tiny_sam import build_tiny_sam


def test_budget_counts_only_uncached_slices_and_refuses_before_encoding(case):  # noqa: F811
    image = case[0]
    sam = build_tiny_sam(seed=2)
    prep = Preprocessing.from_percentiles(image)
    cache = EmbeddingCache.memory_only()
    encode_slices(sam, "tiny", image, 0, [3], prep, cache)
    with pytest.raises(EncodeBudgetExceeded, match="2 slices to encode \\(1 cached\\) exceed --max-encode 1") as error:
        encode_slices(sam, "tiny", image, 0, [3, 4, 5], prep, cache, max_encode=1)
    assert (error.value.to_encode, error.value.cached) == (2, 1)
    assert "mobile_sam" in str(error.value) and "register" in str(error.value)
    again = encode_slices(sam, "tiny", image, 0, [3], prep, cache, max_encode=0)  # all cached: within budget
    assert again.stats.encoder_calls == 0 and again.stats.cache_hits == 1


def test_cli_max_encode_refuses_in_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path / "home"))
    image, annotation, checkpoint, _, _ = case
    write_volume(image, tmp_path / "image.nrrd")
    write_labels(annotation.labels, tmp_path / "drawn.nrrd")
    code = main(["propagate", str(tmp_path / "image.nrrd"), str(tmp_path / "drawn.nrrd"),
                 "-o", str(tmp_path / "o.nrrd"), "--engine", "sam:interpolate", "--checkpoint", str(checkpoint),
                 "--max-encode", "0", "--progress", "none"])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "exceed --max-encode 0" in lines[0]
    assert not (tmp_path / "o.nrrd").exists()
    assert main(["propagate", str(tmp_path / "image.nrrd"), str(tmp_path / "drawn.nrrd"),
                 "-o", str(tmp_path / "o.nrrd"), "--engine", "register", "--max-encode", "3"]) == 2
