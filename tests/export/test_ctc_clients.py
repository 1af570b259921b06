"""A model's CTC head, exported as ctc.onnx, decodes audio files in sherpa-onnx's CTC greedy
search to the tokens and frames of our ctc_greedy_search: a tiny random Zipformer offline
(OfflineRecognizer.from_zipformer_ctc) and streaming (OnlineRecognizer.from_zipformer2_ctc,
against PyTorch's StreamingRecognizer over the windows sherpa-onnx decodes), and a tiny random
Conformer offline (the same generic layout). A streaming Conformer's CTC head is not exported:
no sherpa-onnx layout fits its caches."""

import numpy as np
import onnx
import pytest
import torch

from asr_recipes.checkpoint import load_checkpoint, model_from_checkpoint
from asr_recipes.chunk_windows import FULL
from asr_recipes.data.features import fbank_extractor
from asr_recipes.decoding import DecodingOptions, make_search
from asr_recipes.decoding.streaming import StreamingRecognizer, decode_streaming
from asr_recipes.export import contract
from asr_recipes.export.compat import plan_export
from tests.decoding.trained_exp import MODEL
from tests.export.exported import ZIPFORMER_CHUNK, ZIPFORMER_LEFT, exported, random_checkpoint, wav_files, \
    zipformer_export
from tests.export.test_offline_clients import sherpa_symbols
from tests.export.test_streaming_clients import TAIL, decode_online

sherpa_onnx = pytest.importorskip("sherpa_onnx")
pytestmark = pytest.mark.slow
CONFORMER_CTC = {**MODEL, "ctc_head": True}


@pytest.fixture(scope="module")
def wavs(tiny_corpus, tmp_path_factory):
    return wav_files(tiny_corpus, tmp_path_factory.mktemp("wavs"))


@torch.no_grad()
def ours(model, samples, chunk: tuple[int, int] | None = None):
    """ctc_greedy_search on our features: offline, or chunk by chunk (chunk_size, left_context)."""
    feats = torch.from_numpy(fbank_extractor().extract(samples[None], 16000))  # (T, 80)
    lens = torch.tensor([feats.size(0)])
    search = make_search(model, DecodingOptions("ctc_greedy_search"))
    if chunk is not None:
        return decode_streaming(StreamingRecognizer(model, search, *chunk, last=FULL), feats[None], lens)[0].hyps[0]
    return search.search(*model.encode(feats[None], lens))[0]


def sherpa_offline_ctc(out, wavs):
    recognizer = sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(model=str(out / contract.CTC),
                                                                  tokens=str(out / contract.TOKENS), num_threads=1)
    streams = []
    for _, samples in wavs:
        s = recognizer.create_stream()
        s.accept_waveform(16000, samples)
        streams.append(s)
    recognizer.decode_streams(streams)  # one padded batch
    return [s.result for s in streams]


def assert_same(results, expected, tokenizer, wavs):
    emitted = 0
    for (path, _), r, ref in zip(wavs, results, expected):
        assert r.tokens == sherpa_symbols(tokenizer, ref.tokens), path
        assert r.timestamps == pytest.approx([0.04 * t for t in ref.timestamps], abs=1e-6), path
        emitted += len(ref.tokens)
    assert emitted > 3 * len(wavs)  # not a comparison of empty outputs


def test_zipformer_offline_ctc(tiny_corpus, tmp_path_factory, wavs):
    _, model, tokenizer, out = zipformer_export(tiny_corpus, tmp_path_factory, causal=False)
    assert_same(sherpa_offline_ctc(out, wavs), [ours(model, s) for _, s in wavs], tokenizer, wavs)


def test_zipformer_streaming_ctc(tiny_corpus, tmp_path_factory, wavs):
    _, model, tokenizer, out = zipformer_export(tiny_corpus, tmp_path_factory, causal=True)
    wavs = [(p, np.concatenate([s, np.zeros(int(TAIL * 16000), np.float32)])) for p, s in wavs]
    recognizer = sherpa_onnx.OnlineRecognizer.from_zipformer2_ctc(tokens=str(out / contract.TOKENS),
                                                                  model=str(out / contract.CTC), num_threads=1)
    results = [decode_online(recognizer, samples, pieces=5) for _, samples in wavs]
    expected = [ours(model, s, (ZIPFORMER_CHUNK, ZIPFORMER_LEFT)) for _, s in wavs]
    assert_same(results, expected, tokenizer, wavs)
    meta = {p.key: p.value for p in onnx.load(str(out / contract.CTC), load_external_data=False).metadata_props}
    encoder_meta = {p.key: p.value for p in onnx.load(str(out / contract.ENCODER)).metadata_props}
    assert {k: meta[k] for k in contract.ZIPFORMER_STREAMING_METADATA} == {
        k: encoder_meta[k] for k in contract.ZIPFORMER_STREAMING_METADATA}
    assert meta["model_type"] == "zipformer2"


def test_conformer_offline_ctc(tiny_corpus, tmp_path_factory, wavs):
    ckpt = random_checkpoint("conformer-ctc", CONFORMER_CTC, tiny_corpus, tmp_path_factory, ctc_blank_bias=1.0)
    out = exported("conformer-ctc", ckpt, tmp_path_factory)
    model, tokenizer = model_from_checkpoint(load_checkpoint(ckpt))
    assert_same(sherpa_offline_ctc(out, wavs), [ours(model, s) for _, s in wavs], tokenizer, wavs)
    graph = onnx.load(str(out / contract.CTC)).graph
    assert [v.name for v in graph.input] == ["x", "x_lens"]
    assert [v.name for v in graph.output] == ["log_probs", "log_probs_len"]
    dims = [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    assert dims[2] == tokenizer.vocab_size  # sherpa-onnx reads the vocabulary size from this shape
    meta = {p.key: p.value for p in onnx.load(str(out / contract.CTC)).metadata_props}
    assert meta["model_type"] == "zipformer2_ctc"
    assert (out / contract.CTC_INT8).is_file()


def test_a_streaming_conformers_ctc_head_is_left_out_with_a_warning(tiny_corpus, tmp_path_factory):
    causal = {**CONFORMER_CTC, "causal": True}
    ckpt = load_checkpoint(random_checkpoint("conformer-ctc-causal", causal, tiny_corpus, tmp_path_factory,
                                             {"chunk_size": 4, "left_context": 8}))
    plan = plan_export(ckpt, "model.pt")
    assert plan.streaming and not plan.ctc
    assert any("no streaming CTC layout" in w for w in plan.warnings)
    offline = plan_export(ckpt, "model.pt", streaming=False)
    assert offline.ctc and not offline.warnings
