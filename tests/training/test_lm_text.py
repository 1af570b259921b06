"""LM text assembly: sentences from text files (plain and gzip) and transcripts, exclusions, the
length limit, and the cache of the tokenized text (keyed by the files' size and modification
time and by the tokenizer)."""

import gzip
import os

import numpy as np
import pytest

from asr_recipes.data.tokenizer import CharTokenizer
from asr_recipes.training.lm_text import TextSources, TokenCorpus, cache_key, tokenize_cached, tokenize_sources

LINES = ["AB BA", "CAB", "", "ABC ABC ABC", "BAD", "A"]


@pytest.fixture
def tokenizer():
    return CharTokenizer.train(["ABC D"])


def write(path, lines, mtime_ns=None):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def as_lists(corpus: TokenCorpus) -> list[list[int]]:
    return [s.tolist() for s in corpus]


def test_files_plain_and_gzip_with_exclusions_and_a_length_limit(tmp_path, tokenizer):
    plain = write(tmp_path / "a.txt", LINES[:3])
    packed = write(tmp_path / "b.txt.gz", LINES[3:])
    corpus, stats = tokenize_sources(TextSources(files=(str(plain), str(packed))), tokenizer,
                                     exclude={"CAB"}, max_tokens=5)
    kept = ["AB BA", "BAD", "A"]  # "" skipped, "CAB" excluded, "ABC ABC ABC" (11 tokens) too long
    assert as_lists(corpus) == tokenizer.encode(kept)
    assert corpus.num_tokens == sum(len(t) for t in kept)
    assert (stats.sentences, stats.excluded, stats.too_long, stats.unknown_tokens) == (3, 1, 1, 0)
    with pytest.raises(ValueError, match="use files"):
        TextSources.from_mapping({"synthetic": {"task": "commands"}})
    with pytest.raises(FileNotFoundError, match="missing.txt not found"):
        tokenize_sources(TextSources(files=(str(tmp_path / "missing.txt"),)), tokenizer)


def test_cache_is_keyed_by_size_mtime_and_tokenizer(tmp_path, tokenizer):
    text = write(tmp_path / "lm.txt", ["AB", "BA CD"], mtime_ns=1_000_000_000)
    sources, cache = TextSources(files=(str(text),)), tmp_path / "cache"
    first, _ = tokenize_cached(sources, tokenizer, cache_dir=cache)
    assert as_lists(first) == tokenizer.encode(["AB", "BA CD"])
    [cached] = cache.glob("tokens-*.npz")
    # New text of the same size with the old modification time: the key is unchanged, so the
    # cached tokens come back (what the key promises: no re-reading while size and mtime hold).
    write(text, ["CD", "DC AB"], mtime_ns=1_000_000_000)
    again, stats = tokenize_cached(sources, tokenizer, cache_dir=cache)
    assert as_lists(again) == as_lists(first) and stats.sentences == 2
    # A new modification time is a new key: the text is tokenized again, the old cache goes.
    os.utime(text, ns=(2_000_000_000, 2_000_000_000))
    fresh, _ = tokenize_cached(sources, tokenizer, cache_dir=cache)
    assert as_lists(fresh) == tokenizer.encode(["CD", "DC AB"])
    assert [p.name for p in cache.glob("tokens-*.npz")] != [cached.name]
    assert len(list(cache.glob("tokens-*.npz"))) == 1
    # Another tokenizer, other exclusions or another limit: other keys.
    other = CharTokenizer.train(["ABCD E"])
    keys = {cache_key(sources, t, e, m) for t, e, m in
            [(tokenizer, set(), None), (other, set(), None), (tokenizer, {"CD"}, None), (tokenizer, set(), 3)]}
    assert len(keys) == 4
    # A damaged cache file is recomputed, not trusted.
    [current] = cache.glob("tokens-*.npz")
    current.write_bytes(b"not an npz")
    repaired, _ = tokenize_cached(sources, tokenizer, cache_dir=cache)
    assert as_lists(repaired) == tokenizer.encode(["CD", "DC AB"])
    assert np.load(current)["tokens"].dtype == np.int32
