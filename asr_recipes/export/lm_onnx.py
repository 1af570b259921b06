"""The RNN-LM (asr_recipes.lm.model) as the ONNX files sherpa-onnx's ``--lm`` reads.

sherpa-onnx has two LM clients, one per file (icefall's rnn_lm/export-onnx.py writes both):

``lm-with-state.onnx``: streaming recognizers (OnlineRecognizer, ``lm=``; online-rnn-lm.cc,
shallow fusion in modified beam search)

    inputs   x (N, L) int64 tokens, h0 (num_layers, N, hidden) float32, c0 (same)
    outputs  log_softmax (N, V) float32: log P(next token | state, x) after the LAST token
             of x (sherpa feeds L = 1), next_h0, next_c0
    metadata num_layers, hidden_size, sos_id (read; a missing key is fatal), plus
             model_type "rnnlm", eos_id, vocab_size, embedding_dim
    sherpa starts every hypothesis from zero states run through ``sos_id``, then feeds each
    emitted token; inputs and outputs are taken by position.

``lm-no-state.onnx``: offline recognizers (OfflineRecognizer, ``lm=``; offline-lm.cc,
rescoring of the final beam)

    inputs   x (N, L) int64 tokens padded with 0 (no sos/eos), x_lens (N,) int64
    outputs  nll (N,) float32: -log P(x_1..x_len, eos), sos prepended and eos appended
             inside the graph, as RnnLm.sentence_log_prob
    metadata model_type "rnnlm", sos_id, eos_id, vocab_size (not read by sherpa)

``lodr-2gram.fst``: the LODR token bigram (``--lodr-fst``; asr_recipes.export.lodr_fst).
sherpa-onnx *adds* ``lodr_scale`` times the bigram log-probability: pass a negative
``--lodr-scale`` (ours, subtracted, is positive); its offline rescoring also multiplies it by
``--lm-scale`` (see asr_recipes.decoding.lm_fusion).

Both graphs are checked against PyTorch with onnxruntime on batches and lengths other than the
traced ones (ExportError beyond float32 noise).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from asr_recipes.data.tokenizer import tokenizer_from_dict
from asr_recipes.export.compat import ExportError
from asr_recipes.export.graphs import _export
from asr_recipes.export.lodr_fst import write_lodr_fst
from asr_recipes.export.verify import _check, session
from asr_recipes.lm.bigram import load_bigram
from asr_recipes.checkpoint.lm import LmCheckpointError, lm_from_checkpoint, load_lm_checkpoint
from asr_recipes.lm.model import EOS_ID, SOS_ID, RnnLm

log = logging.getLogger(__name__)

WITH_STATE, NO_STATE = "lm-with-state.onnx", "lm-no-state.onnx"
LODR_FST, EXPORT_INFO = "lodr-2gram.fst", "lm-export.json"
WITH_STATE_INPUTS, WITH_STATE_OUTPUTS = ("x", "h0", "c0"), ("log_softmax", "next_h0", "next_c0")
NO_STATE_INPUTS, NO_STATE_OUTPUTS = ("x", "x_lens"), ("nll",)


class _WithState(nn.Module):
    def __init__(self, lm: RnnLm):
        super().__init__()
        self.lm = lm

    def forward(self, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, (h, c) = self.lm.logits(x, (h0, c0))  # (N, L, V)
        return logits[:, -1].log_softmax(dim=-1), h, c


class _NoState(nn.Module):
    def __init__(self, lm: RnnLm):
        super().__init__()
        self.lm = lm

    def forward(self, x: Tensor, x_lens: Tensor) -> Tensor:
        return -self.lm.sentence_log_prob(x, x_lens)  # (N,)


def _metadata(lm: RnnLm, comment: str) -> dict:
    return {"model_type": "rnnlm", "version": "1", "model_author": "asr-recipes", "comment": comment,
            "sos_id": SOS_ID, "eos_id": EOS_ID, "vocab_size": lm.vocab_size, "num_layers": lm.num_layers,
            "hidden_size": lm.hidden_dim, "embedding_dim": lm.config.embedding_dim}


def export_lm(lm: RnnLm, out_dir: str | Path, comment: str = "asr-recipes RNN-LM") -> dict[str, float]:
    """Write WITH_STATE and NO_STATE into ``out_dir`` and verify them; returns the max
    relative error of each output against PyTorch."""
    out_dir = Path(out_dir)
    lm = lm.cpu().eval()
    meta = _metadata(lm, comment)
    N, L = 1, 2  # traced sizes; verification uses others
    h0, c0 = lm.initial_state(N, "cpu")
    x = torch.full((N, L), 2, dtype=torch.int64)
    _export(_WithState(lm), (x, h0, c0), out_dir / WITH_STATE, WITH_STATE_INPUTS, WITH_STATE_OUTPUTS,
            {"x": {0: "N", 1: "L"}, "h0": {1: "N"}, "c0": {1: "N"}, "log_softmax": {0: "N"},
             "next_h0": {1: "N"}, "next_c0": {1: "N"}}, meta)
    _export(_NoState(lm), (x, torch.tensor([L])), out_dir / NO_STATE, NO_STATE_INPUTS, NO_STATE_OUTPUTS,
            {"x": {0: "N", 1: "L"}, "x_lens": {0: "N"}, "nll": {0: "N"}},
            {k: meta[k] for k in ("model_type", "version", "model_author", "comment", "sos_id", "eos_id",
                                  "vocab_size")})
    errors = verify_lm(lm, out_dir)
    log.info("LM graphs match PyTorch (max relative error %s)", ", ".join(f"{k} {v:.2g}" for k, v in errors.items()))
    return errors


@torch.no_grad()
def verify_lm(lm: RnnLm, out_dir: Path) -> dict[str, float]:
    """Both graphs against PyTorch: the stateful one on a batch of 3 random states and 1- and
    3-token inputs, the stateless one on 3 sentences of lengths 5, 1 and 0 (padded with 0)."""
    g = torch.Generator().manual_seed(0)
    errors: dict[str, float] = {}
    V = lm.vocab_size
    sess = session(out_dir / WITH_STATE)
    h0, c0 = (torch.randn(lm.num_layers, 3, lm.hidden_dim, generator=g) * 0.5 for _ in range(2))
    for L in (1, 3):
        x = torch.randint(1, V, (3, L), generator=g)
        got = sess.run(list(WITH_STATE_OUTPUTS), {"x": x.numpy(), "h0": h0.numpy(), "c0": c0.numpy()})
        for name, value, ref in zip(WITH_STATE_OUTPUTS, got, _WithState(lm)(x, h0, c0)):
            _check(name, value, ref, errors, out_dir / WITH_STATE)
    sess = session(out_dir / NO_STATE)
    x = torch.randint(1, V, (3, 5), generator=g)
    x_lens = torch.tensor([5, 1, 0])
    x[1, 1:], x[2] = 0, 0
    (got,) = sess.run(list(NO_STATE_OUTPUTS), {"x": x.numpy(), "x_lens": x_lens.numpy()})
    _check("nll", np.asarray(got), _NoState(lm)(x, x_lens), errors, out_dir / NO_STATE)
    return errors


def export_lm_checkpoint(lm_path: str | Path, out_dir: str | Path, bigram_path: str | Path | None = None) -> dict:
    """bin.export_lm: the LM checkpoint's two graphs (and, with ``bigram_path``, LODR_FST)
    into ``out_dir``, each file moved into place only once written and verified; returns
    what lm-export.json records."""
    try:
        ckpt = load_lm_checkpoint(lm_path)
        lm = lm_from_checkpoint(ckpt, str(lm_path))
        tokens = tokenizer_from_dict(ckpt["tokenizer"]).tokens
        bigram = load_bigram(bigram_path, tokens) if bigram_path else None
    except (LmCheckpointError, ValueError) as e:
        raise ExportError(str(e)) from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".lm-export-"))
    try:
        errors = export_lm(lm, tmp, comment=f"asr-recipes RNN-LM {Path(lm_path).name}")
        if bigram is not None:
            write_lodr_fst(bigram, tmp / LODR_FST)
        info = {"lm": str(lm_path), "bigram": None if bigram_path is None else str(bigram_path),
                "vocab_size": lm.vocab_size, "lm_config": lm.config.to_dict(), "max_relative_error": errors,
                "files": sorted(p.name for p in tmp.iterdir())}
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=1) + "\n")
        for p in tmp.iterdir():
            os.replace(p, out_dir / p.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info
