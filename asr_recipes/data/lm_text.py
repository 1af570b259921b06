"""Text for language models: sentences from files, transcripts and the sentence generator,
tokenized by a recipe's tokenizer into one compact array.

Sources (``TextSources``; any combination):

    files      plain UTF-8 text, one sentence per line, already normalised like the
               transcripts (e.g. LibriSpeech's ``librispeech-lm-norm.txt``: upper case, no
               punctuation); read line by line, so a multi-gigabyte corpus never sits in memory
               as Python strings
    manifests  lhotse supervisions or cuts manifests: their transcripts
    synthetic  {"task", "count", "seed"}: sentences of the synthesized corpora's generator
               (asr_recipes.data.corpora.synthetic_text) from its *train* split only. With the
               seed the corpus was synthesized with, no dev or test sentence can be drawn: the
               generator assigns every distinct sentence to one split by a seeded hash.

``exclude``: sentences never to train on (the transcripts of dev and test sets), compared
after the tokenizer's normalisation; the training text of bin.train_lm also excludes its
own dev text, so the dev perplexity is measured on unseen sentences.

``estimate_bigram`` counts the LODR token bigram (asr_recipes.lm.bigram) from transcripts.

A ``TokenCorpus`` holds every sentence's token ids (no blank, no sos/eos) back to back in one
int32 array with (S + 1,) offsets: a few bytes per token instead of a Python list per sentence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np

from asr_recipes.data.corpora.synthetic_text import GRAMMARS, sample_sentences
from asr_recipes.data.tokenizer import Tokenizer, read_manifest_texts
from asr_recipes.lm.bigram import TokenBigram

log = logging.getLogger(__name__)

_BLOCK = 10000  # sentences tokenized per call


@dataclass(frozen=True)
class TextSources:
    files: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()
    synthetic: Optional[Mapping] = None  # {"task": ..., "count": ..., "seed": ...}

    @classmethod
    def from_mapping(cls, cfg: Mapping | None) -> "TextSources":
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - {"files", "manifests", "synthetic"})
        if unknown:
            raise ValueError(f"unknown text source key(s) {unknown}; use files, manifests, synthetic")
        synthetic = cfg.get("synthetic")
        if synthetic is not None:
            synthetic = dict(synthetic)
            missing = {"task", "count", "seed"} - set(synthetic)
            if missing or synthetic["task"] not in GRAMMARS:
                raise ValueError(f"synthetic text needs task (one of {sorted(GRAMMARS)}), count and seed; got "
                                 f"{synthetic}")
        return cls(tuple(str(f) for f in cfg.get("files") or ()), tuple(str(m) for m in cfg.get("manifests") or ()),
                   synthetic)

    def __bool__(self) -> bool:
        return bool(self.files or self.manifests or self.synthetic)

    def sentences(self) -> Iterator[str]:
        """Every sentence of every source, in order (empty lines skipped)."""
        for path in self.files:
            yield from _file_lines(Path(path))
        for manifest in self.manifests:
            yield from read_manifest_texts(manifest)
        if self.synthetic:
            s = self.synthetic
            yield from sample_sentences(GRAMMARS[s["task"]], "train", int(s["count"]), int(s["seed"]))


def _file_lines(path: Path) -> Iterator[str]:
    if not path.is_file():
        raise FileNotFoundError(f"LM text file {path} not found; give one sentence per line (for LibriSpeech: "
                                "librispeech-lm-norm.txt from the recipe's download stage)")
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield line
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e}); convert it to UTF-8") from None


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


def estimate_bigram(manifests: Sequence[str], tokenizer: Tokenizer, discount: Optional[float] = None) -> TokenBigram:
    """The LODR token bigram of the transcripts of ``manifests`` (the transducer's training
    data), over ``tokenizer``'s ids."""
    if not manifests:
        raise ValueError("no transcripts to count a bigram from: give the training parts' supervision manifests")
    corpus, stats = tokenize_sources(TextSources(manifests=tuple(manifests)), tokenizer)
    log.info("bigram text: %s", stats.describe())
    return TokenBigram.estimate(corpus, tokenizer.vocab_size, discount)
