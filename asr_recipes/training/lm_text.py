"""Text for language models: sentences from text files and transcripts, tokenized by a recipe's
tokenizer into one compact array; the LODR token bigram counted from transcripts.

Sources (``TextSources``; either or both):

    files      plain UTF-8 text (``.gz`` read as gzip), one sentence per line, already
               normalised like the transcripts (LibriSpeech's ``librispeech-lm-norm.txt.gz``:
               upper case, no punctuation; the synthesized corpora's generator text, written
               by ``python -m asr_recipes.bin.synthesize_text``); read line by line, so a
               multi-gigabyte corpus never sits in memory as Python strings
    manifests  lhotse supervisions or cuts manifests: their transcripts

``exclude``: sentences never to train on (the transcripts of dev and test sets), compared
after the tokenizer's normalisation; the training text of bin.train_lm also excludes its
own dev text, so the dev perplexity is measured on unseen sentences.

A ``TokenCorpus`` holds every sentence's token ids (no blank, no sos/eos) back to back in one
int32 array with (S + 1,) offsets: a few bytes per token instead of a Python list per sentence.

Tokenizing LibriSpeech's 40M LM sentences takes long, so ``tokenize_cached`` keeps the result
in ``<cache_dir>/tokens-<key>.npz``, the key naming everything the result depends on: each
file's and manifest's path, size and modification time, the tokenizer (its full description,
so another vocabulary gets another key), the excluded sentences and the length limit. A
changed input makes a new key; the old cache file is then deleted.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np

from asr_recipes.atomic_files import write_atomic_with
from asr_recipes.data.tokenizer import Tokenizer, read_manifest_texts
from asr_recipes.lm.bigram import TokenBigram

log = logging.getLogger(__name__)

_BLOCK = 10000  # sentences tokenized per call
_CACHE_VERSION = 1  # raise when the cached arrays change meaning


@dataclass(frozen=True)
class TextSources:
    files: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, cfg: Mapping | None) -> "TextSources":
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - {"files", "manifests"})
        if unknown:
            raise ValueError(f"unknown text source key(s) {unknown}; use files (one sentence per line; for a "
                             "synthesized corpus write them with python -m asr_recipes.bin.synthesize_text) "
                             "or manifests")
        return cls(tuple(str(f) for f in cfg.get("files") or ()), tuple(str(m) for m in cfg.get("manifests") or ()))

    def __bool__(self) -> bool:
        return bool(self.files or self.manifests)

    def sentences(self) -> Iterator[str]:
        """Every sentence of every source, in order (empty lines skipped)."""
        for path in self.files:
            yield from _file_lines(Path(path))
        for manifest in self.manifests:
            yield from read_manifest_texts(manifest)


def _check_text_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"LM text file {path} not found; give one sentence per line (for LibriSpeech: "
                                "librispeech-lm-norm.txt.gz from the recipe's download stage)")


def _file_lines(path: Path) -> Iterator[str]:
    _check_text_file(path)
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as f:
            for line in f:
                if line.strip():
                    yield line
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e}); convert it to UTF-8") from None
    except (gzip.BadGzipFile, EOFError) as e:
        raise ValueError(f"{path} is not a complete gzip file ({e}); download it again") from None


@dataclass
class TokenCorpus:
    """S sentences: tokens (T_total,) int32 back to back, offsets (S + 1,) int64."""

    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[int]]) -> "TokenCorpus":
        seqs = [np.asarray(s, dtype=np.int32) for s in sequences]
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(s) for s in seqs])
        return cls(np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int32), offsets)


@dataclass
class CorpusStats:
    sentences: int = 0
    excluded: int = 0
    too_long: int = 0
    unknown_tokens: int = 0

    def describe(self) -> str:
        return (f"{self.sentences} sentences kept, {self.excluded} excluded (dev/test), {self.too_long} longer "
                f"than the token limit, {self.unknown_tokens} <unk> tokens")


def normalized_set(texts: Iterable[str], tokenizer: Tokenizer) -> set[str]:
    return {tokenizer.normalize(t) for t in texts}


def tokenize_sources(sources: TextSources, tokenizer: Tokenizer, exclude: set[str] = frozenset(),
                     max_tokens: Optional[int] = None) -> tuple[TokenCorpus, CorpusStats]:
    """Token ids of every sentence of ``sources`` that is not in ``exclude`` (normalised
    texts) and has 1..max_tokens tokens."""
    stats = CorpusStats()
    chunks, lengths = [], []  # one int32 array and one length array per block of sentences

    def flush(block: list[str]) -> None:
        kept = [ids for ids in tokenizer.encode(block) if ids]
        if max_tokens is not None:
            stats.too_long += sum(len(ids) > max_tokens for ids in kept)
            kept = [ids for ids in kept if len(ids) <= max_tokens]
        if kept:
            stats.unknown_tokens += sum(ids.count(tokenizer.unk_id) for ids in kept)
            chunks.append(np.fromiter((k for ids in kept for k in ids), dtype=np.int32))
            lengths.append(np.fromiter((len(ids) for ids in kept), dtype=np.int64, count=len(kept)))

    block: list[str] = []
    for sentence in sources.sentences():
        if exclude and tokenizer.normalize(sentence) in exclude:
            stats.excluded += 1
            continue
        block.append(sentence)
        if len(block) == _BLOCK:
            flush(block)
            block = []
    flush(block)
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    stats.sentences = len(all_lengths)
    offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(all_lengths)
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    return TokenCorpus(tokens, offsets), stats


def cache_key(sources: TextSources, tokenizer: Tokenizer, exclude: set[str], max_tokens: Optional[int]) -> str:
    """16 hex digits naming what tokenize_sources' result depends on (module docstring)."""

    def stamp(path: str) -> list:
        st = os.stat(path)
        return [os.path.abspath(path), st.st_size, st.st_mtime_ns]

    for path in sources.files:
        _check_text_file(Path(path))
    for manifest in sources.manifests:
        if not Path(manifest).is_file():
            raise FileNotFoundError(f"manifest {manifest} not found")
    described = {"version": _CACHE_VERSION, "files": [stamp(p) for p in sources.files],
                 "manifests": [stamp(m) for m in sources.manifests],
                 "tokenizer": hashlib.sha256(json.dumps(tokenizer.to_dict(), sort_keys=True).encode()).hexdigest(),
                 "exclude": hashlib.sha256("\n".join(sorted(exclude)).encode("utf-8")).hexdigest(),
                 "max_tokens": max_tokens}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def tokenize_cached(sources: TextSources, tokenizer: Tokenizer, exclude: set[str] = frozenset(),
                    max_tokens: Optional[int] = None,
                    cache_dir: str | os.PathLike | None = None) -> tuple[TokenCorpus, CorpusStats]:
    """tokenize_sources, read from ``cache_dir`` when it holds this key's result (else
    computed and stored there); without cache_dir, always computed."""
    if cache_dir is None:
        return tokenize_sources(sources, tokenizer, exclude, max_tokens)
    cache_dir = Path(cache_dir)
    path = cache_dir / f"tokens-{cache_key(sources, tokenizer, exclude, max_tokens)}.npz"
    if path.is_file():
        try:
            with np.load(path) as f:
                corpus = TokenCorpus(f["tokens"], f["offsets"])
                stats = CorpusStats(**json.loads(str(f["stats"])))
            log.info("tokenized LM text from %s", path)
            return corpus, stats
        except (OSError, ValueError, KeyError, TypeError) as e:  # a damaged cache is recomputed
            log.warning("ignoring the unreadable token cache %s (%s)", path, e)
    corpus, stats = tokenize_sources(sources, tokenizer, exclude, max_tokens)
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_atomic_with(path, lambda f: np.savez(f, tokens=corpus.tokens, offsets=corpus.offsets,
                                               stats=np.array(json.dumps(asdict(stats)))))
    for old in cache_dir.glob("tokens-*.npz"):
        if old != path:
            old.unlink(missing_ok=True)
    log.info("token cache written: %s", path)
    return corpus, stats


def estimate_bigram(manifests: Sequence[str], tokenizer: Tokenizer, discount: Optional[float] = None) -> TokenBigram:
    """The LODR token bigram of the transcripts of ``manifests`` (the transducer's training
    data), over ``tokenizer``'s ids."""
    if not manifests:
        raise ValueError("no transcripts to count a bigram from: give the training parts' supervision manifests")
    corpus, stats = tokenize_sources(TextSources(manifests=tuple(manifests)), tokenizer)
    log.info("bigram text: %s", stats.describe())
    return TokenBigram.estimate(corpus, tokenizer.vocab_size, discount)
