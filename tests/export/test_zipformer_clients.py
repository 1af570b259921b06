"""Tiny random Zipformers (icefall's decoder with its learned blank embedding; a 16-channel front
end), exported in sherpa-onnx's Zipformer layouts, decode audio files in sherpa-onnx to the
tokens of PyTorch's greedy search (one symbol per frame): offline in OfflineRecognizer, streaming
in OnlineRecognizer against PyTorch's StreamingRecognizer over the windows sherpa-onnx decodes
("full" policy). Our onnxruntime decoder gives the same tokens, and the deployment check's
greedy rows agree with PyTorch on every utterance."""

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
from asr_recipes.export.onnx_greedy import OnnxGreedyDecoder
from asr_recipes.export.verify import session
from tests.export.exported import ZIPFORMER_CHUNK as CHUNK
from tests.export.exported import ZIPFORMER_LEFT as LEFT
from tests.export.exported import wav_files, zipformer_export
from tests.export.test_offline_clients import sherpa_decode, sherpa_symbols
from tests.export.test_streaming_clients import TAIL, sherpa_online

sherpa_onnx = pytest.importorskip("sherpa_onnx")
pytestmark = pytest.mark.slow
@pytest.fixture(scope="module")
def offline(tiny_corpus, tmp_path_factory):
    """(checkpoint path, model, tokenizer, export dir, wavs)"""
    return (*zipformer_export(tiny_corpus, tmp_path_factory, causal=False),
            wav_files(tiny_corpus, tmp_path_factory.mktemp("wavs")))


@pytest.fixture(scope="module")
def streaming(tiny_corpus, tmp_path_factory):
    """(checkpoint path, model, tokenizer, export dir, wavs with sherpa's tail padding)"""
    wavs = [(p, np.concatenate([s, np.zeros(int(TAIL * 16000), np.float32)]))
            for p, s in wav_files(tiny_corpus, tmp_path_factory.mktemp("wavs"))]
    return (*zipformer_export(tiny_corpus, tmp_path_factory, causal=True), wavs)


def features(samples):
    return torch.from_numpy(fbank_extractor().extract(samples[None], 16000))  # (T, 80), as in training


@torch.no_grad()
def pytorch_greedy(model, samples, chunked: bool):
    feats = features(samples)
    search = make_search(model, DecodingOptions("greedy_search", max_sym_per_frame=1))
    if chunked:
        recognizer = StreamingRecognizer(model, search, CHUNK, LEFT, last=FULL)
        return decode_streaming(recognizer, feats[None], torch.tensor([feats.size(0)]))[0].hyps[0]
    enc, lens = model.encode(feats[None], torch.tensor([feats.size(0)]))
    return search.search(enc, lens)[0]


def test_offline_sherpa_and_onnxruntime_greedy_equal_pytorch_greedy(offline):
    _, model, tokenizer, out, wavs = offline
    ours = OnnxGreedyDecoder(out)
    emitted = 0
    for (path, samples), r in zip(wavs, sherpa_decode(out, wavs, "greedy_search")):
        ref = pytorch_greedy(model, samples, chunked=False)
        assert r.tokens == sherpa_symbols(tokenizer, ref.tokens), path
        assert r.timestamps == pytest.approx([0.04 * t for t in ref.timestamps], abs=1e-6), path
        assert ours.decode_features(features(samples).numpy()) == list(ref.tokens), path
        emitted += len(ref.tokens)
    assert emitted > 3 * len(wavs)  # the comparison is not between empty outputs


def test_streaming_sherpa_and_onnxruntime_greedy_equal_pytorch_chunked(streaming):
    _, model, tokenizer, out, wavs = streaming
    ours = OnnxGreedyDecoder(out)
    emitted = 0
    for path, samples in wavs:
        ref = pytorch_greedy(model, samples, chunked=True)
        r = sherpa_online(out, samples, "greedy_search")
        assert r.tokens == sherpa_symbols(tokenizer, ref.tokens), path
        assert r.timestamps == pytest.approx([0.04 * t for t in ref.timestamps], abs=1e-6), path
        assert ours.decode_features(features(samples).numpy()) == list(ref.tokens), path
        emitted += len(ref.tokens)
    assert emitted > 3 * len(wavs)


def io_names(path):
    g = onnx.load(str(path)).graph
    return [v.name for v in g.input], [v.name for v in g.output]


def metadata(path):
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_offline_layout(offline):
    _, model, tokenizer, out, _ = offline
    assert io_names(out / contract.ENCODER) == (["x", "x_lens"], ["encoder_out", "encoder_out_lens"])
    assert metadata(out / contract.ENCODER)["model_type"] == "zipformer2"
    assert metadata(out / contract.DECODER)["context_size"] == "2"
    # sherpa-onnx's start context [-1, blank]: -1 is "before the start" (zero embedding), not blank,
    # whose embedding icefall's decoder learns
    y = torch.tensor([[-1, 0], [0, 0], [-1, 3]])
    (got,) = session(out / contract.DECODER).run(None, {"y": y.numpy()})
    with torch.no_grad():
        expected = model.joiner.decoder_proj(model.decoder(y, need_pad=False).squeeze(1))  # (3, J)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-5)
    assert (expected[0] - expected[1]).abs().max() > 1e-2  # the two starts differ in this decoder


def test_streaming_layout_is_icefalls(streaming):
    """Names in icefall's order (7 layers over the 6 stacks), the metadata sherpa-onnx builds its
    initial states from, and the graph's state shapes equal to the ones it builds."""
    _, model, tokenizer, out, _ = streaming
    inputs, outputs = io_names(out / contract.ENCODER)
    per_layer = ["cached_key", "cached_nonlin_attn", "cached_val1", "cached_val2", "cached_conv1", "cached_conv2"]
    states = [f"{name}_{i}" for i in range(7) for name in per_layer] + ["embed_states", "processed_lens"]
    assert inputs == ["x", *states] and outputs == ["encoder_out", *(f"new_{s}" for s in states)]
    meta = metadata(out / contract.ENCODER)
    # chunk 4 = 16 feature frames + 13 of look-ahead; left context 8 encoder frames = 16 at 50 Hz / ds
    assert {k: meta[k] for k in contract.ZIPFORMER_STREAMING_METADATA} == {
        "T": "29", "decode_chunk_len": "16", "num_encoder_layers": "1,2,1,1,1,1", "encoder_dims": "16,16,24,32,24,16",
        "cnn_module_kernels": "7,5,5,3,5,7", "left_context_len": "16,8,4,2,4,8", "query_head_dims": "8,8,8,8,8,8",
        "value_head_dims": "4,4,4,4,4,4", "num_heads": "2,2,2,4,2,2"}
    assert meta["model_type"] == "zipformer2"
    graph = onnx.load(str(out / contract.ENCODER)).graph
    shapes = [[d.dim_value or 1 for d in v.type.tensor_type.shape.dim] for v in graph.input[1:]]  # batch "N" -> 1
    assert [tuple(s) for s in shapes] == contract.zipformer_state_shapes(meta)
    assert shapes[-2] == [1, 128, 3, 19]  # sherpa-onnx's embed_states, whatever the front end's width


def test_deploy_check_rows_agree_with_pytorch(offline, streaming, tiny_corpus):
    from asr_recipes.export.deploy_check import deploy_check

    cuts = tiny_corpus.fbank / "librispeech_cuts_test-clean.jsonl.gz"
    for (ckpt, _, _, out, _), causal in ((offline, False), (streaming, True)):
        rows, info = deploy_check(load_checkpoint(ckpt), out, cuts, limit=2)
        assert info["streaming"] == causal and info["chunk"] == ((CHUNK, LEFT) if causal else None)
        assert any(rows[0].hyps)
        for r in rows[1:3]:  # onnxruntime and sherpa-onnx greedy, fp32: the same words (this random model
            # emits word boundaries twice in a row, which the decoders render with one or two spaces)
            assert r.precision == "fp32" and "greedy" in r.decoder and r.identical == 100.0
            assert [h.split() for h in r.hyps] == [h.split() for h in rows[0].hyps]
