"""The exported RNN-LM and LODR FST in sherpa-onnx itself: its streaming recognizer reports
the LM log-probability it used for every token it emitted (lm_probs, with the LODR term
included as lodr_scale / lm_scale times the bigram's); those must be our LM's and bigram's
numbers for the same tokens. The offline recognizer must load the stateless LM and the FST
and decode. The transducer is a random tiny model (blank made unlikely, so it emits tokens)."""

import json
import subprocess
import sys

import pytest
import torch

from asr_recipes.data.features import feature_config
from asr_recipes.data.tokenizer import train_tokenizer
from asr_recipes.export.exporter import export_checkpoint
from asr_recipes.export.lm_onnx import LODR_FST, NO_STATE, WITH_STATE, export_lm_checkpoint
from asr_recipes.export.graphs import read_metadata
from asr_recipes.lm.bigram import TokenBigram
from asr_recipes.checkpoint.lm import save_lm_checkpoint
from asr_recipes.lm.model import LmConfig, RnnLm
from asr_recipes.models.build import build_transducer
from tests.decoding.test_search import TINY

LM_SCALE, LODR_SCALE = 0.5, -0.3  # sherpa-onnx's convention: a negative lodr_scale subtracts

_CLIENT = r"""
import json, sys, numpy as np, sherpa_onnx
model_dir, lm_dir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
files = dict(encoder=f"{model_dir}/encoder.onnx", decoder=f"{model_dir}/decoder.onnx",
             joiner=f"{model_dir}/joiner.onnx", tokens=f"{model_dir}/tokens.txt")
samples = (0.3 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)
lm = dict(lm_scale=float(sys.argv[4]), lodr_fst=f"{lm_dir}/lodr-2gram.fst", lodr_scale=float(sys.argv[5]))
if mode == "online":
    r = sherpa_onnx.OnlineRecognizer.from_transducer(**files, num_threads=1, decoding_method="modified_beam_search",
                                                     max_active_paths=4, lm=f"{lm_dir}/lm-with-state.onnx", **lm)
    s = r.create_stream(); s.accept_waveform(16000, samples)
    s.accept_waveform(16000, np.zeros(8000, dtype=np.float32)); s.input_finished()
    while r.is_ready(s):
        r.decode_stream(s)
    res = r.get_result_all(s)
    print(json.dumps({"tokens": list(res.tokens), "lm_probs": list(res.lm_probs)}))
else:
    r = sherpa_onnx.OfflineRecognizer.from_transducer(**files, num_threads=1, decoding_method="modified_beam_search",
                                                      lm=f"{lm_dir}/lm-no-state.onnx", **lm)
    s = r.create_stream(); s.accept_waveform(16000, samples); r.decode_stream(s)
    print(json.dumps({"tokens": list(s.result.tokens)}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm_export")
    tokenizer = train_tokenizer("char", ["AB CD", "DCBA A"], None)
    V = tokenizer.vocab_size
    cfg = {**TINY, "causal": True}
    torch.manual_seed(0)
    model = build_transducer(cfg, V).eval()
    with torch.no_grad():
        model.joiner.output_linear.bias[0] -= 3.0
    ckpt = {"model_config": cfg, "vocab_size": V, "feature_dim": 80, "tokenizer": tokenizer.to_dict(),
            "feature_config": feature_config(), "model": model.state_dict(),
            "decoding": {"chunk_size": 4, "left_context": 8}}
    export_checkpoint(ckpt, root / "online", sherpa_check=False)
    export_checkpoint(ckpt, root / "offline", streaming=False, sherpa_check=False)
    lm = RnnLm(V, LmConfig(embedding_dim=16, hidden_dim=16, num_layers=2, tie_weights=True)).eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.mul_(3.0)
    save_lm_checkpoint(root / "lm.pt", {"lm_config": lm.config.to_dict(), "vocab_size": V,
                                        "tokenizer": tokenizer.to_dict(), "model": lm.state_dict()})
    bigram = TokenBigram.estimate(tokenizer.encode(["AB CD", "DCBA A", "AAB"]), V)
    bigram.save(root / "bigram.json", tokenizer.tokens)
    info = export_lm_checkpoint(root / "lm.pt", root / "lm", root / "bigram.json")
    return root, tokenizer, lm, bigram, info


def sherpa(root, mode):
    out = subprocess.run([sys.executable, "-c", _CLIENT, str(root / mode), str(root / "lm"), mode, str(LM_SCALE),
                          str(LODR_SCALE)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_export_writes_the_files_and_metadata_sherpa_reads(exported):
    root, _, lm, _, info = exported
    assert info["files"] == sorted([WITH_STATE, NO_STATE, LODR_FST])
    meta = read_metadata(root / "lm" / WITH_STATE)
    assert (meta["num_layers"], meta["hidden_size"], meta["sos_id"]) == ("2", "16", "0")
    assert max(info["max_relative_error"].values()) < 1e-4


@torch.no_grad()
def test_sherpa_streaming_fusion_uses_our_lm_and_bigram_probabilities(exported):
    root, tokenizer, lm, bigram, _ = exported
    got = sherpa(root, "online")
    assert len(got["tokens"]) >= 3  # the random model emits; otherwise the check below is empty
    symbols = tokenizer.tokens
    ids = [symbols.index("\u2581" if t == " " else t) for t in got["tokens"]]
    log_probs, state = lm.start(1)
    previous, want = 0, []
    for k in ids:  # sherpa reports LM + (lodr_scale / lm_scale) * bigram per token
        want.append(float(log_probs[0, k]) + LODR_SCALE / LM_SCALE * float(bigram.log_probs(previous)[k]))
        log_probs, state = lm.step(torch.tensor([k]), state)
        previous = k
    assert got["lm_probs"] == pytest.approx(want, abs=1e-4)


def test_sherpa_offline_rescoring_loads_the_stateless_lm_and_the_fst(exported):
    root, tokenizer, *_ = exported
    got = sherpa(root, "offline")
    assert got["tokens"] and all(t in tokenizer.tokens or t == " " for t in got["tokens"])
