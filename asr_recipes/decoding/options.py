"""What a search is asked to do (DecodingOptions) and what it returns (DecodingResult).

Length conventions shared by every search method: encoder frames T' (40 ms each) come
from ``Transducer.encode``; ``max_sym_per_frame`` bounds the non-blank symbols emitted
while one encoder frame is current, ``max_sym_per_utt`` bounds the symbols of a whole
hypothesis. Neither blank nor ``<unk>`` is ever emitted: ``<unk>`` acts as a second blank
(it ends the frame without output), as in icefall's and sherpa-onnx's searches, so the
same model gives the same tokens here and in sherpa-onnx. Scores are natural-log
probabilities of the path(s) a hypothesis stands for under the joiner's log-softmax
(after ``blank_penalty``), plus the hotword bonus of the phrases a hypothesis completed
(``Hypothesis.hotword_bonus``; asr_recipes.decoding.context_graph) and, with a language
model, its scaled log-probability (``Hypothesis.lm_score``). Timestamps are the
encoder frames (0-based, from the start of the stream) on which each token was emitted;
asr_recipes.decoding.word_times turns them into seconds. Token spans (``timestamps`` option)
are the first and last encoder frame of each token in the CTC head's forced alignment
(asr_recipes.decoding.ctc_align); word times prefer them when present.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from dataclasses import dataclass, field
from typing import Optional

from asr_recipes.constants import UNK_ID


#: values of DecodingOptions.timestamps
TIMESTAMP_SOURCES = ("auto", "ctc", "search")


@dataclass(frozen=True)
class DecodingOptions:
    """Settings of one search method; frozen so one object can key a results file.

    Attributes:
        method: a registered search name (``asr_recipes.decoding.search_methods()``).
        beam: hypotheses kept per utterance (beam methods only).
        max_sym_per_frame: >= 1. Character tokens with x4 subsampling often need 2-3.
        max_sym_per_utt: cap on the symbols of one utterance; None = no cap beyond
            T' * max_sym_per_frame, which every method respects anyway (so no search can
            loop forever, even with a model that never predicts blank).
        unk_id: the ``<unk>`` id that is never emitted (None: the vocabulary has none).
        blank_penalty: subtracted from the blank logit before the log-softmax (> 0 makes
            blank less likely: fewer deletions, more insertions), as sherpa-onnx's option.
        hotwords: phrases to favour, as (token ids, per-token bonus) pairs
            (asr_recipes.decoding.hotwords.read_hotwords makes them from a file); searches
            that cannot use them refuse them (modified_beam_search can).
        nbest: hypotheses reported per utterance (n-best lists); beam methods only, <= beam.
        lm: an RNN-LM checkpoint (asr_recipes.bin.train_lm) whose sentence log-probability,
            times ``lm_scale``, is added to the scores (asr_recipes.decoding.lm_fusion);
            modified_beam_search only.
        lodr_bigram, lodr_scale: a token bigram file (asr_recipes.bin.token_bigram) whose
            sentence log-probability, times ``lodr_scale``, is subtracted (LODR: it estimates the
            transducer's internal LM). lodr_scale > 0 needs lodr_bigram.
        lm_rescore: apply the LM (and LODR) to the final beam only (n-best rescoring) instead
            of at every token (shallow fusion).
        timestamps: where word times come from: "auto" (the CTC head's forced alignment
            when the model has a CTC head, else the search's frames), "ctc" (the alignment;
            the model must have a head) or "search" (the frames on which the search emitted
            each token).
    """

    method: str = "greedy_search"
    beam: int = 4
    max_sym_per_frame: int = 1
    max_sym_per_utt: Optional[int] = None
    unk_id: Optional[int] = UNK_ID
    blank_penalty: float = 0.0
    hotwords: tuple[tuple[tuple[int, ...], float], ...] = ()
    nbest: int = 1
    lm: Optional[str] = None
    lm_scale: float = 0.0
    lodr_bigram: Optional[str] = None
    lodr_scale: float = 0.0
    lm_rescore: bool = False
    timestamps: str = "auto"

    def __post_init__(self):
        if not isinstance(self.beam, int) or self.beam < 1:
            raise ValueError(f"beam must be an integer >= 1, got {self.beam!r}")
        if not isinstance(self.max_sym_per_frame, int) or self.max_sym_per_frame < 1:
            raise ValueError(f"max_sym_per_frame must be an integer >= 1, got {self.max_sym_per_frame!r}")
        if self.max_sym_per_utt is not None and (not isinstance(self.max_sym_per_utt, int)
                                                 or self.max_sym_per_utt < 0):
            raise ValueError(f"max_sym_per_utt must be null or an integer >= 0, got {self.max_sym_per_utt!r}")

        if not isinstance(self.blank_penalty, (int, float)) or isinstance(self.blank_penalty, bool):
            raise ValueError(f"blank_penalty must be a number, got {self.blank_penalty!r}")
        if not isinstance(self.nbest, int) or self.nbest < 1:
            raise ValueError(f"nbest must be an integer >= 1, got {self.nbest!r}")
        if self.nbest > self.beam:
            raise ValueError(f"nbest={self.nbest} is more than the beam ({self.beam}) keeps; raise beam to >= nbest")
        for name in ("lm_scale", "lodr_scale"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if self.lm_scale and not self.lm:
            raise ValueError(f"lm_scale={self.lm_scale} needs an LM: give lm=<LM checkpoint> "
                             "(asr_recipes.bin.train_lm)")
        if self.lodr_scale and not self.lodr_bigram:
            raise ValueError(f"lodr_scale={self.lodr_scale} needs lodr_bigram=<bigram file> "
                             "(asr_recipes.bin.token_bigram)")
        if self.lm_rescore and not (self.lm or self.lodr_bigram):
            raise ValueError("lm_rescore=true needs an LM to rescore with: give lm=<LM checkpoint>")
        if self.timestamps not in TIMESTAMP_SOURCES:
            raise ValueError(f"timestamps must be one of {', '.join(TIMESTAMP_SOURCES)}, got {self.timestamps!r}")
        # canonical, hashable form (lists from YAML or callers become tuples)
        phrases = tuple((tuple(int(k) for k in tokens), float(score)) for tokens, score in self.hotwords)
        object.__setattr__(self, "hotwords", phrases)

    def symbol_cap(self, num_frames: int) -> int:
        """Most symbols an utterance of ``num_frames`` encoder frames may get."""
        cap = num_frames * self.max_sym_per_frame
        return cap if self.max_sym_per_utt is None else min(cap, self.max_sym_per_utt)

    @property
    def utterance_cap(self) -> float:
        """Most symbols of one hypothesis beyond the per-frame bound (inf: none). Searches
        check only this: no frame exceeds max_sym_per_frame, so symbol_cap() holds for any
        number of frames, including a stream whose length is not known yet."""
        return math.inf if self.max_sym_per_utt is None else self.max_sym_per_utt

    def settings_key(self, uses_beam: bool) -> str:
        """The part of a results-file key that describes these settings,
        e.g. ``beam-4-max-sym-per-frame-1`` (``beam`` only for beam methods)."""
        parts = [f"beam-{self.beam}"] if uses_beam else []
        parts.append(f"max-sym-per-frame-{self.max_sym_per_frame}")
        if self.max_sym_per_utt is not None:
            parts.append(f"max-sym-per-utt-{self.max_sym_per_utt}")
        if self.blank_penalty:
            parts.append(f"blank-penalty-{self.blank_penalty:g}")
        if self.hotwords:
            parts.append(f"hotwords-{self.hotwords_digest()}")
        if self.nbest > 1:
            parts.append(f"nbest-{self.nbest}")
        if self.lm:
            parts.append(f"lm-{file_digest(self.lm)}-scale-{self.lm_scale:g}")
        if self.lodr_scale:
            parts.append(f"lodr-{file_digest(self.lodr_bigram)}-scale-{self.lodr_scale:g}")
        if self.uses_lm and self.lm_rescore:
            parts.append("rescore")
        if self.timestamps != "auto":
            parts.append(f"timestamps-{self.timestamps}")
        return "-".join(parts)

    @property
    def uses_lm(self) -> bool:
        """An LM or a LODR bigram is given (a search must apply them or refuse)."""
        return bool(self.lm or self.lodr_bigram)

    def hotwords_digest(self) -> str:
        """8 hex digits naming the hotwords (token ids and scores): which list, at which
        score, produced a results file."""
        return hashlib.sha256(repr(self.hotwords).encode("ascii")).hexdigest()[:8]


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()[:8]


def file_digest(path: str) -> str:
    """8 hex digits of a file's contents (which LM made a results file); cached while the
    file is unchanged."""
    st = os.stat(path)
    return _digest(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class Hypothesis:
    """One token sequence (no blank, no unk), its score, and the encoder frame on which
    each token was emitted (same length as tokens, non-decreasing).

    score = log-probability + hotword_bonus + lm_score: the bonus of the hotword phrases the
    sequence completed (0 without hotwords) and the LM's share, lm_scale * log P_LM(y) -
    lodr_scale * log P_bigram(y) (0 without an LM; asr_recipes.decoding.lm_fusion). token_spans:
    (first, last) encoder frame of each token in the CTC head's forced alignment, or () when
    not aligned (only a result's best hypothesis is aligned)."""

    tokens: tuple[int, ...]
    score: float
    timestamps: tuple[int, ...] = ()
    hotword_bonus: float = 0.0
    lm_score: float = 0.0
    token_spans: tuple[tuple[int, int], ...] = ()

    @property
    def log_prob(self) -> float:
        """The transducer's log-probability alone."""
        return self.score - self.hotword_bonus - self.lm_score


@dataclass(frozen=True)
class DecodingResult:
    """Search output for one utterance: hypotheses best first (one for greedy search)."""

    hyps: tuple[Hypothesis, ...] = field(default=())

    @property
    def tokens(self) -> list[int]:
        """Token ids of the best hypothesis."""
        return list(self.hyps[0].tokens) if self.hyps else []

    @property
    def score(self) -> float:
        return self.hyps[0].score if self.hyps else float("-inf")

    @property
    def timestamps(self) -> list[int]:
        """Encoder frame of each token of the best hypothesis."""
        return list(self.hyps[0].timestamps) if self.hyps else []

    @property
    def token_spans(self) -> list[tuple[int, int]]:
        """(first, last) aligned encoder frame of each token of the best hypothesis ([]: none)."""
        return list(self.hyps[0].token_spans) if self.hyps else []


#: Keys of a checkpoint's "decoding" entry that are not DecodingOptions fields: the
#: streaming chunk (encoder frames) and left context (encoder frames) of causal models.
STREAMING_KEYS = ("chunk_size", "left_context")


def check_decoding_defaults(defaults: dict) -> dict:
    """Validate the recipe's ``decoding`` settings before they go into checkpoints: the
    search fields must make a valid DecodingOptions, chunk_size >= 1 and left_context >= 0.
    Returns them as a plain dict; ValueError names the bad key."""
    defaults = dict(defaults)
    known = {f for f in DecodingOptions.__dataclass_fields__} | set(STREAMING_KEYS)
    unknown = sorted(set(defaults) - known)
    if unknown:
        raise ValueError(f"unknown decoding key(s) {unknown}; known: {sorted(known)}")
    DecodingOptions(**{k: v for k, v in defaults.items() if k not in STREAMING_KEYS})
    if int(defaults.get("chunk_size", 1)) < 1 or int(defaults.get("left_context", 0)) < 0:
        raise ValueError(f"decoding.chunk_size must be >= 1 and decoding.left_context >= 0 (encoder frames), got "
                         f"{defaults.get('chunk_size')} and {defaults.get('left_context')}")
    return defaults
