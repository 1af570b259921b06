"""Search strategies over a Transducer's encoder output, and their shared machinery.

Each method is one small subclass of :class:`SearchStrategy` that registers itself under
its ``name``; adding a method adds a class (whisper ``decoding.py`` style):

    options = DecodingOptions(method="modified_beam_search", beam=4)
    results = decode(model, encoder_out, encoder_lens, options)  # list[DecodingResult]

One search implementation serves whole utterances and streams: a search keeps one state
object per stream (its hypotheses and the number of encoder frames it has seen), and
``advance`` continues the given streams over their next encoder frames. Offline search is
start -> one advance over all frames -> results; streaming decoding calls advance once per
chunk, with whichever streams have a chunk ready (asr_recipes.decoding.streaming).

The joiner's input projections are applied once: ``encoder_proj`` to all frames of the
batch before the search, ``decoder_proj`` once per distinct decoder context
(:class:`DecoderCache`), so a search step costs one tanh + output linear per hypothesis.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor

from asr_recipes.decoding.ctc_align import with_token_spans
from asr_recipes.decoding.options import DecodingOptions, DecodingResult
from asr_recipes.models.decoder import BEFORE_START

_REGISTRY: dict[str, type["SearchStrategy"]] = {}


class SearchStrategy(ABC):
    """Base of the search methods.

    Subclasses set ``name`` (the ``DecodingOptions.method`` value), ``uses_beam``
    (whether ``beam`` changes their output, which then goes into results-file keys; beam
    methods also give n-best lists) and ``uses_hotwords`` (whether they apply
    ``DecodingOptions.hotwords``; the others refuse options with hotwords), ``uses_lm``
    (the same for an LM and a LODR bigram), and implement :meth:`start`, :meth:`advance`
    and :meth:`results` over their own per-stream state objects (each with a ``frames``
    attribute: encoder frames seen so far).
    """

    name: ClassVar[str]
    uses_beam: ClassVar[bool] = False
    uses_hotwords: ClassVar[bool] = False
    uses_lm: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name in _REGISTRY:
            raise ValueError(f"search method {cls.name!r} is registered twice")
        _REGISTRY[cls.name] = cls

    def __init__(self, model, options: DecodingOptions):
        """model: a Transducer (``.decoder``, ``.joiner``, ``.blank_id``), in eval mode."""
        if options.hotwords and not self.uses_hotwords:
            users = [name for name, cls in _REGISTRY.items() if cls.uses_hotwords]
            raise ValueError(f"{self.name} does not use hotwords; decode with {' or '.join(users)}, "
                             "or without a hotwords file")
        if options.uses_lm and not self.uses_lm:
            users = [name for name, cls in _REGISTRY.items() if cls.uses_lm]
            raise ValueError(f"{self.name} does not use a language model; decode with {' or '.join(users)}, "
                             "or without lm / lodr_bigram")
        if options.nbest > 1 and not self.uses_beam:
            raise ValueError(f"{self.name} keeps one hypothesis, so it has no n-best list (nbest={options.nbest}); "
                             "use a beam method, e.g. modified_beam_search")
        self.model = model
        self.options = options
        self.blank_id = model.blank_id
        self.context_size = model.decoder.context_size
        # tokens that end a frame without output: blank, and <unk> like icefall / sherpa-onnx
        unk = options.unk_id
        self.silent = {self.blank_id} | ({unk} if unk is not None and unk < model.vocab_size else set())
        has_ctc_head = getattr(model, "ctc_head", None) is not None
        if options.timestamps == "ctc" and not has_ctc_head:
            raise ValueError("timestamps=ctc aligns hypotheses with the model's CTC head, and this model has none "
                             "(trained without model.ctc_head=true); use timestamps=auto or search")
        #: whether results get token_spans from the CTC head's forced alignment (ctc_align)
        self.aligns_with_ctc = has_ctc_head and options.timestamps != "search"

    @torch.inference_mode()
    def search(self, encoder_out: Tensor, encoder_lens: Tensor) -> list[DecodingResult]:
        """
        Args:
            encoder_out: (N, T', D) encoder frames; frames t >= encoder_lens[n] are padding.
            encoder_lens: (N,) int64 valid encoder frames per utterance.
        Returns:
            N results, in batch order (with token_spans when aligns_with_ctc).
        """
        streams = self.start(encoder_out.size(0))
        self.advance(streams, encoder_out, encoder_lens)
        results = self.results(streams)
        if self.aligns_with_ctc:
            results = with_token_spans(results, self.model.ctc_log_probs(encoder_out), encoder_lens, self.blank_id)
        return results

    @abstractmethod
    def start(self, num_streams: int) -> list[Any]:
        """Fresh states for ``num_streams`` streams (nothing heard yet)."""

    @abstractmethod
    def advance(self, streams: Sequence[Any], encoder_out: Tensor, encoder_lens: Tensor) -> None:
        """Continue each stream over its next encoder frames, in place.

        Args:
            streams: N states from start() (any subset of the streams, in any order).
            encoder_out: (N, T', D) the next frames of each stream; frames t >= encoder_lens[n]
                are padding. encoder_lens: (N,) int64 (0 allowed: that stream is unchanged).
        """

    @abstractmethod
    def results(self, streams: Sequence[Any]) -> list[DecodingResult]:
        """The hypotheses of each stream so far, best first (the final result once the
        stream's last frames were passed to advance). Does not change the states."""

    # ----------------------------------------------------------- helpers
    def project_encoder(self, encoder_out: Tensor) -> Tensor:
        """(N, T', D) -> (N, T', J): the joiner's encoder projection, once per frame."""
        return self.model.joiner.encoder_proj(encoder_out)

    def log_probs(self, enc_proj: Tensor, dec_proj: Tensor) -> Tensor:
        """(R, J), (R, J) already projected -> (R, V) float32 log-probabilities, the blank
        logit lowered by ``blank_penalty`` first."""
        logits = self.model.joiner(enc_proj, dec_proj, project_input=False).float()  # (R, V)
        if self.options.blank_penalty:
            logits[:, self.blank_id] -= self.options.blank_penalty
        return logits.log_softmax(dim=-1)  # (R, V)

    def blank_only(self, log_probs: Tensor, at_cap: Tensor) -> None:
        """In place on (R, V) log_probs: rows where at_cap (R,) bool is set may only take
        blank or <unk> (their hypotheses reached the utterance's symbol cap)."""
        silent = sorted(self.silent)
        kept = log_probs[:, silent].clone()  # (R, |silent|)
        log_probs[at_cap] = float("-inf")
        log_probs[:, silent] = kept

    def context(self, tokens: Sequence[int]) -> tuple[int, ...]:
        """The decoder's input for a hypothesis: the last context_size entries of
        [-1] * (context_size - 1) + [blank] + tokens (blank starts every sequence; -1 marks
        positions before the start, whose embedding is zero: icefall's and sherpa-onnx's
        convention, the same as blank for decoders whose blank embedding is zero)."""
        c = self.context_size
        tail = tuple(tokens[len(tokens) - c :]) if len(tokens) >= c else (self.blank_id, *tokens)[-c:]
        return (BEFORE_START,) * (c - len(tail)) + tail


class DecoderCache:
    """Projected decoder outputs keyed by context (a tuple of context_size token ids).

    A stateless decoder's output depends on its context alone, so each context is run
    through decoder + ``decoder_proj`` once per search, batched over the contexts that
    are new at a step.
    """

    def __init__(self, model, device: torch.device):
        self.decoder = model.decoder
        self.decoder_proj = model.joiner.decoder_proj
        self.device = device
        self._cache: dict[tuple[int, ...], Tensor] = {}

    def __call__(self, contexts: Sequence[tuple[int, ...]]) -> Tensor:
        """K contexts -> (K, J) projected decoder outputs."""
        new = list(dict.fromkeys(c for c in contexts if c not in self._cache))
        if new:
            y = torch.tensor(new, dtype=torch.int64, device=self.device)  # (K', context_size)
            out = self.decoder_proj(self.decoder(y, need_pad=False).squeeze(1))  # (K', J)
            self._cache.update(zip(new, out))
        return torch.stack([self._cache[c] for c in contexts])  # (K, J)


def log_add(a: float | None, b: float) -> float:
    """log(exp(a) + exp(b)); a None (nothing there yet) gives b."""
    if a is None or a == -math.inf:
        return b
    hi, lo = (a, b) if a >= b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def search_methods() -> tuple[str, ...]:
    """Names of the registered search methods."""
    return tuple(_REGISTRY)


def get_search(method: str) -> type[SearchStrategy]:
    """The strategy class registered as ``method``; a clear error for an unknown name."""
    try:
        return _REGISTRY[method]
    except KeyError:
        raise ValueError(f"unknown decoding method {method!r}; choose from {', '.join(_REGISTRY)}") from None


def make_search(model, options: DecodingOptions) -> SearchStrategy:
    return get_search(options.method)(model, options)


@torch.inference_mode()
def decode(model, encoder_out: Tensor, encoder_lens: Tensor, options: DecodingOptions) -> list[DecodingResult]:
    """Run ``options.method`` on a batch: (N, T', D), (N,) -> N DecodingResults."""
    if encoder_out.ndim != 3 or encoder_lens.shape != (encoder_out.size(0),):
        raise ValueError(f"expected encoder_out (N, T', D) and encoder_lens (N,), got "
                         f"{tuple(encoder_out.shape)} and {tuple(encoder_lens.shape)}")
    return make_search(model, options).search(encoder_out, encoder_lens)
