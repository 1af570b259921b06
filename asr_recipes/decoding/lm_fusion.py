"""Language-model scores for modified beam search: shallow fusion, LODR and n-best rescoring.

For a token sequence y = y_1..y_U the search adds to the transducer's log-probability

    F(y) = lm_scale * log P_LM(y) - lodr_scale * log P_bigram(y)

where both are sentence probabilities with the end of the sentence included
(asr_recipes.lm.model, asr_recipes.lm.bigram): the RNN-LM is the external LM, the token
bigram counted from the transducer's training transcripts estimates its internal LM, whose
share LODR takes out again (Zheng et al., arXiv 2203.16776). F depends on the token sequence
only, so merged alignments of one sequence share it and the search's log-add is unchanged.

Shallow fusion (``lm_rescore=False``): every token y_u adds its term
lm_scale * log p_LM(y_u | y_<u) - lodr_scale * log p_bigram(y_u | y_u-1) to the candidate's
score before the beam is pruned (so the LM decides which hypotheses survive), and the
end-of-sentence terms are added when results are read: a final score is
transducer + F(y) (+ hotword bonus). Each hypothesis carries an ``LmNode``: its LSTM state
and next-token distribution, computed lazily (a new hypothesis keeps its parent's node and
its new token until the search next needs its distribution, then all pending nodes of a step
run through the LSTM as one batch). Nodes live in the hypotheses, so they continue across
streaming chunks like the hotword state.

Rescoring (``lm_rescore=True``): the search runs without the LM; when results are read, F(y)
of every hypothesis in the final beam is computed in one batch and the beam is re-ranked.
Cheaper (one LM pass over `beam` sentences per utterance), but the LM cannot bring back
hypotheses the beam dropped.

sherpa-onnx (asr_recipes.export.lm_onnx, lodr_fst) scales the same terms differently: its
``--lodr-scale`` is added, not subtracted (pass -lodr_scale), and its offline rescoring
multiplies it by ``--lm-scale`` again (pass -lodr_scale / lm_scale); its streaming fusion
leaves out the end-of-sentence terms.
"""

from __future__ import annotations

import functools
import os
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from asr_recipes.data.tokenizer import tokenizer_from_dict
from asr_recipes.lm.bigram import BOUNDARY, TokenBigram, load_bigram
from asr_recipes.checkpoint.lm import load_lm_checkpoint, lm_from_checkpoint
from asr_recipes.lm.model import EOS_ID, RnnLm


class LmNode:
    """The LM's view of one hypothesis: the last token (the bigram's context), and either the
    LSTM state after the hypothesis' tokens with the (V,) next-token log-probs (resolved), or
    the parent node and the new token (pending)."""

    __slots__ = ("parent", "token", "h", "c", "log_probs")

    def __init__(self, token: int, parent: Optional["LmNode"] = None, h: Optional[Tensor] = None,
                 c: Optional[Tensor] = None, log_probs: Optional[Tensor] = None):
        self.parent, self.token = parent, token
        self.h, self.c, self.log_probs = h, c, log_probs  # (L, H), (L, H), (V,)

    @property
    def resolved(self) -> bool:
        return self.log_probs is not None


class LmFusion:
    """F(y) of the module docstring, for a search over a ``vocab_size`` vocabulary.

    Args:
        lm: the RNN-LM (eval mode, on the search's device), or None for LODR alone.
        bigram: the token bigram for LODR (needed iff lodr_scale != 0).
        silent: ids the search never emits (blank, <unk>): they get no LM term.
    """

    def __init__(self, lm: Optional[RnnLm], lm_scale: float, bigram: Optional[TokenBigram], lodr_scale: float,
                 vocab_size: int, silent: Sequence[int], device: torch.device):
        for name, v in (("LM", lm), ("LODR bigram", bigram)):
            if v is not None and v.vocab_size != vocab_size:
                raise ValueError(f"the {name} has {v.vocab_size} tokens but the transducer {vocab_size}; use one "
                                 "trained over the transducer's tokenizer")
        self.lm, self.lm_scale = lm, float(lm_scale)
        self.bigram, self.lodr_scale = bigram, float(lodr_scale)
        self.vocab_size, self.device = vocab_size, device
        self.silent = sorted(silent)
        self._root: Optional[LmNode] = None

    @classmethod
    def from_options(cls, options, vocab_size: int, silent: Sequence[int], device: torch.device) -> "LmFusion":
        """From DecodingOptions' lm / lm_scale / lodr_bigram / lodr_scale (files loaded here)."""
        lm = load_lm(options.lm, device) if options.lm else None
        bigram = load_bigram(options.lodr_bigram) if options.lodr_bigram else None
        return cls(lm, options.lm_scale, bigram, options.lodr_scale, vocab_size, silent, device)

    # --------------------------------------------------------------- fusion
    def root(self) -> LmNode:
        """The node of the empty hypothesis (state after sos); shared, computed once."""
        if self._root is None:
            if self.lm is not None:
                log_probs, (h, c) = self.lm.start(1, self.device)  # (1, V), (L, 1, H) x 2
                self._root = LmNode(BOUNDARY, None, h[:, 0], c[:, 0], log_probs[0])
            else:
                self._root = LmNode(BOUNDARY, None, log_probs=torch.zeros(self.vocab_size, device=self.device))
        return self._root

    def child(self, node: LmNode, token: int) -> LmNode:
        """The (pending) node after ``node`` + ``token``."""
        return LmNode(token, parent=node)

    @torch.inference_mode()
    def resolve(self, nodes: Sequence[LmNode]) -> None:
        """Run the LSTM one step for every pending node (one batch); parents are resolved."""
        pending = list({id(n): n for n in nodes if not n.resolved}.values())
        if not pending:
            return
        if self.lm is None:
            for n in pending:
                n.log_probs, n.parent = self._root.log_probs, None
            return
        h = torch.stack([n.parent.h for n in pending], dim=1)  # (L, R, H)
        c = torch.stack([n.parent.c for n in pending], dim=1)  # (L, R, H)
        tokens = torch.tensor([n.token for n in pending], dtype=torch.int64, device=self.device)  # (R,)
        log_probs, (h, c) = self.lm.step(tokens, (h, c))  # (R, V), (L, R, H) x 2
        for r, n in enumerate(pending):
            n.h, n.c, n.log_probs = h[:, r], c[:, r], log_probs[r]
            n.parent = None  # the history is in the state now: let it go

    def token_scores(self, nodes: Sequence[LmNode]) -> Tensor:
        """(R, V) float64 fusion term of every next token after each (resolved) node: 0 for
        the silent ids."""
        scores = torch.stack([n.log_probs for n in nodes]).double() * self.lm_scale  # (R, V)
        if self.lodr_scale:
            rows = np.stack([self.bigram.log_probs(n.token) for n in nodes])  # (R, V)
            scores -= self.lodr_scale * torch.from_numpy(rows).to(scores.device)
        scores[:, self.silent] = 0.0
        return scores

    def end_scores(self, nodes: Sequence[LmNode]) -> list[float]:
        """The end-of-sentence terms after each (resolved) node (one device-to-host copy)."""
        if not nodes:
            return []
        lm = (torch.stack([n.log_probs[EOS_ID] for n in nodes]).double() * self.lm_scale).tolist()
        if self.lodr_scale:
            return [a - self.lodr_scale * float(self.bigram.log_probs(n.token)[BOUNDARY]) for a, n in zip(lm, nodes)]
        return lm

    # ------------------------------------------------------------ rescoring
    @torch.inference_mode()
    def sentence_scores(self, sentences: Sequence[Sequence[int]]) -> list[float]:
        """F(y) of whole sentences (one LM batch)."""
        if not sentences:
            return []
        lm = [0.0] * len(sentences)
        if self.lm is not None and self.lm_scale:
            lens = torch.tensor([len(s) for s in sentences], dtype=torch.int64, device=self.device)
            tokens = torch.zeros(len(sentences), max(int(lens.max()), 1), dtype=torch.int64, device=self.device)
            for n, s in enumerate(sentences):
                tokens[n, :len(s)] = torch.tensor(s, dtype=torch.int64)
            lm = self.lm.sentence_log_prob(tokens, lens).double().tolist()
        return [self.lm_scale * a - (self.lodr_scale * self.bigram.sentence_log_prob(s) if self.lodr_scale else 0.0)
                for a, s in zip(lm, sentences)]


def load_lm(path: str | os.PathLike, device: torch.device | str = "cpu") -> RnnLm:
    """The RNN-LM of an LM checkpoint, in eval mode on ``device``; ValueError naming the file.
    Read once per process while the file is unchanged (check_vocabulary and every search
    share that model; searches only read it)."""
    return _loaded(path, device)[0]


def check_vocabulary(options, tokens: Sequence[str], device: torch.device | str = "cpu") -> None:
    """The LM and bigram files of ``options`` were made over the symbols ``tokens`` (the
    transducer's tokenizer); ValueError naming the file otherwise. Give the searches' device:
    the LM it loads is then the one the searches use, not a second copy."""
    if options.lm:
        lm_tokens = _loaded(options.lm, device)[1]
        if lm_tokens is not None and lm_tokens != list(tokens):
            raise ValueError(f"{options.lm} was trained over another tokenizer ({len(lm_tokens)} tokens) than this "
                             f"model's ({len(tokens)}); train the LM with the transducer's tokenizer_dir")
    if options.lodr_bigram:
        load_bigram(options.lodr_bigram, tokens)


def _loaded(path: str | os.PathLike, device: torch.device | str) -> tuple[RnnLm, Optional[list[str]]]:
    """(model, the symbols it was trained over or None) of an LM checkpoint, cached by the
    file's path, size and modification time and the device."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        load_lm_checkpoint(path)  # raises the error naming the file
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:0" are one device
        device = torch.device("cuda", torch.cuda.current_device())
    st = os.stat(path)
    return _load_cached(path, st.st_size, st.st_mtime_ns, str(device))


@functools.lru_cache(maxsize=2)
def _load_cached(path: str, size: int, mtime_ns: int, device: str) -> tuple[RnnLm, Optional[list[str]]]:
    # Shared by every search of the process, whether built inside inference mode or not: plain
    # tensors (not inference tensors), and no gradients (decoding never trains it).
    with torch.inference_mode(False):
        ckpt = load_lm_checkpoint(path, device)
        model = lm_from_checkpoint(ckpt, path, device).requires_grad_(False)
    return model, _symbols(ckpt.get("tokenizer"))


def _symbols(tokenizer_dict) -> Optional[list[str]]:
    if not tokenizer_dict:
        return None
    return tokenizer_from_dict(tokenizer_dict).tokens
