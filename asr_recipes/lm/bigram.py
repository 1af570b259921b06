"""A back-off token bigram estimated from transcripts: the LODR estimate of a transducer's
internal language model (Zheng et al., "An Empirical Study of Language Model Integration
for Transducer based Speech Recognition", arXiv 2203.16776).

Ids are the transducer's (blank 0, ``<unk>`` 1, real tokens from 2). As in asr_recipes.lm.model,
id 0 stands for the sentence boundary: it is the context of a sentence's first token and
the prediction that ends a sentence. Each sentence y_1..y_U is counted as the U + 1 pairs
(0, y_1), (y_1, y_2), ..., (y_U, 0).

Smoothing: absolute discounting interpolated with an add-one unigram.

    P_uni(k)  = (n(k) + 1) / (N + V)        k in 0..V-1 (0 = end of sentence): every token
                                            gets a probability, so LODR's log P is finite
    P(k | c)  = max(n(c, k) - D, 0) / n(c) + alpha(c) P_uni(k)
    alpha(c)  = D * N1+(c) / n(c)           (1 for a context never seen: P = P_uni)

with n(c, k) the pair counts, n(c) = sum_k n(c, k), N1+(c) the number of distinct k seen
after c, n(k) = sum_c n(c, k), N = sum_k n(k), and the discount D = n1 / (n1 + 2 n2) (Ney's
estimate from the numbers of pairs seen once and twice; 0.5 when that is undefined). The
interpolated model is also a back-off model with back-off weight alpha(c): a pair never seen
gets exactly alpha(c) P_uni(k), and a seen pair gets more than that, so the OpenFst form
(asr_recipes.export.lodr_fst: explicit arcs plus a back-off arc of cost -log alpha(c),
searched by sherpa-onnx with the cheaper path winning) gives the same probabilities.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from asr_recipes.atomic_files import write_atomic

#: sentence start (as a context) and end (as a prediction)
BOUNDARY = 0
_FORMAT = "asr-recipes-bigram/1"


class TokenBigram:
    """Counts and the smoothed conditional log-probabilities (natural log) built from them.

    Args:
        vocab_size: V, the transducer's vocabulary size.
        pairs: {(context, token): count} over ids in [0, V) (0 = boundary, see above).
        discount: D in (0, 1); None = Ney's estimate from the counts.
    """

    def __init__(self, vocab_size: int, pairs: Mapping[tuple[int, int], int], discount: float | None = None):
        self.vocab_size = vocab_size
        self.pairs = {(int(c), int(k)): int(n) for (c, k), n in pairs.items() if n > 0}
        bad = [(c, k) for c, k in self.pairs if not (0 <= c < vocab_size and 0 <= k < vocab_size)]
        if bad:
            raise ValueError(f"bigram pairs {bad[:3]} have ids outside the vocabulary [0, {vocab_size})")
        if discount is None:
            by_count = Counter(self.pairs.values())
            n1, n2 = by_count.get(1, 0), by_count.get(2, 0)
            discount = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else 0.5
        if not 0.0 < discount < 1.0:
            raise ValueError(f"bigram discount must be in (0, 1), got {discount!r}")
        self.discount = float(discount)
        self.unigram_counts = np.zeros(vocab_size, dtype=np.int64)  # n(k)
        self.context_counts = np.zeros(vocab_size, dtype=np.int64)  # n(c)
        self.context_types = np.zeros(vocab_size, dtype=np.int64)  # N1+(c)
        self.following: dict[int, dict[int, int]] = {}
        for (c, k), n in self.pairs.items():
            self.unigram_counts[k] += n
            self.context_counts[c] += n
            self.context_types[c] += 1
            self.following.setdefault(c, {})[k] = n
        total = int(self.unigram_counts.sum())
        self.unigram = (self.unigram_counts + 1) / (total + vocab_size)  # (V,) P_uni
        self._rows: dict[int, np.ndarray] = {}

    @classmethod
    def estimate(cls, sentences: Iterable[Sequence[int]], vocab_size: int,
                 discount: float | None = None) -> "TokenBigram":
        """From token id sequences (no blank inside; ``<unk>`` counts as a token)."""
        pairs: Counter = Counter()
        for tokens in sentences:
            seq = [BOUNDARY, *(int(t) for t in tokens), BOUNDARY]
            if BOUNDARY in seq[1:-1]:
                raise ValueError(f"a sentence contains token id {BOUNDARY} (the blank), which text never holds")
            pairs.update(zip(seq[:-1], seq[1:]))
        if not pairs:
            raise ValueError("no sentences to estimate a bigram from")
        return cls(vocab_size, pairs, discount)

    def backoff(self, context: int) -> float:
        """alpha(context): the weight of the unigram for tokens never seen after it."""
        n = int(self.context_counts[context])
        return 1.0 if n == 0 else self.discount * int(self.context_types[context]) / n

    def log_probs(self, context: int) -> np.ndarray:
        """(V,) float64 log P(k | context) for every k (k = 0: end of sentence). Cached."""
        row = self._rows.get(context)
        if row is None:
            p = self.backoff(context) * self.unigram  # (V,)
            n = int(self.context_counts[context])
            for k, count in self.following.get(context, {}).items():
                p[k] += (count - self.discount) / n
            row = np.log(p)
            self._rows[context] = row
        return row

    def sentence_log_prob(self, tokens: Sequence[int]) -> float:
        """log P(y_1..y_U, end) = sum over the U + 1 pairs."""
        seq = [BOUNDARY, *tokens, BOUNDARY]
        return float(sum(self.log_probs(c)[k] for c, k in zip(seq[:-1], seq[1:])))

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {"format": _FORMAT, "vocab_size": self.vocab_size, "discount": self.discount,
                "pairs": [[c, k, n] for (c, k), n in sorted(self.pairs.items())]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "TokenBigram":
        if d.get("format") != _FORMAT:
            raise ValueError(f"not a token bigram (format {d.get('format')!r}, expected {_FORMAT!r})")
        return cls(int(d["vocab_size"]), {(c, k): n for c, k, n in d["pairs"]}, float(d["discount"]))

    def save(self, path: str | os.PathLike, tokens: Sequence[str] | None = None) -> Path:
        """JSON file (written atomically); ``tokens``: the tokenizer's symbols, stored so that
        a decoder can check the bigram was counted with its vocabulary."""
        d = self.to_dict()
        if tokens is not None:
            d["tokens"] = list(tokens)
        return write_atomic(path, json.dumps(d, ensure_ascii=False) + "\n")

    def num_contexts(self) -> int:
        return int((self.context_counts > 0).sum())

    def describe(self) -> str:
        return (f"token bigram: V={self.vocab_size}, {len(self.pairs)} pairs over {self.num_contexts()} contexts, "
                f"{int(self.unigram_counts.sum())} predictions, discount {self.discount:.3f}")


def load_bigram(path: str | os.PathLike, tokens: Sequence[str] | None = None) -> TokenBigram:
    """Read a file written by TokenBigram.save; with ``tokens``, check it was counted over
    that vocabulary. ValueError naming the file otherwise."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        bigram = TokenBigram.from_dict(d)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a usable token bigram ({e}); make one with "
                         "python -m asr_recipes.bin.token_bigram") from None
    if tokens is not None and d.get("tokens") is not None and list(d["tokens"]) != list(tokens):
        raise ValueError(f"{path} was counted over another vocabulary ({len(d['tokens'])} tokens) than this "
                         f"model's ({len(tokens)}); rebuild it with this model's tokenizer")
    return bigram

