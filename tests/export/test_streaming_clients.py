"""A tiny causal model, exported in sherpa-onnx's streaming Conformer layout, decodes audio
files in sherpa-onnx's OnlineRecognizer (greedy and modified beam search) to the tokens of
PyTorch's StreamingRecognizer with the "full" last-window policy (the windows sherpa-onnx
decodes) and our searches; our onnxruntime decoder gives the same tokens too."""

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
from tests.export.exported import CHUNK, LEFT, causal_checkpoint, exported, wav_files
from tests.export.test_offline_clients import sherpa_symbols

sherpa_onnx = pytest.importorskip("sherpa_onnx")
TAIL = 0.66  # seconds of zeros after the audio, as sherpa-onnx's Python examples append


@pytest.fixture(scope="module")
def setup(tiny_corpus, tmp_path_factory):
    ckpt = causal_checkpoint(tiny_corpus, tmp_path_factory)
    out = exported("streaming", ckpt, tmp_path_factory)
    model, tokenizer = model_from_checkpoint(load_checkpoint(ckpt))
    wavs = [(p, np.concatenate([s, np.zeros(int(TAIL * 16000), np.float32)]))
            for p, s in wav_files(tiny_corpus, tmp_path_factory.mktemp("wavs"))]
    return model, tokenizer, out, wavs


@torch.no_grad()
def pytorch_streaming(model, samples, method):
    """Our features of the padded audio through StreamingRecognizer with full windows only
    (4 * CHUNK + 3 frames every 4 * CHUNK, while processed + window < frames), caches carried."""
    feats = torch.from_numpy(fbank_extractor().extract(samples[None], 16000))  # (T, 80)
    search = make_search(model, DecodingOptions(method, beam=4, max_sym_per_frame=1))
    recognizer = StreamingRecognizer(model, search, CHUNK, LEFT, last=FULL)
    return decode_streaming(recognizer, feats[None], torch.tensor([feats.size(0)]))[0]


def decode_online(recognizer, samples, pieces: int):
    """A sherpa-onnx OnlineRecognizer's result for 16 kHz ``samples`` arriving in ``pieces``, as
    from a microphone: what is ready is decoded after each piece, the rest after the end of input."""
    stream = recognizer.create_stream()
    for piece in np.array_split(samples, pieces):
        stream.accept_waveform(16000, piece)
        while recognizer.is_ready(stream):
            recognizer.decode_stream(stream)
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    return recognizer.get_result_all(stream)


def sherpa_online(out, samples, method):
    recognizer = sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(out / "tokens.txt"), encoder=str(out / "encoder.onnx"), decoder=str(out / "decoder.onnx"),
        joiner=str(out / "joiner.onnx"), num_threads=1, decoding_method=method, max_active_paths=4)
    return decode_online(recognizer, samples, pieces=7)


def test_streaming_metadata(setup):
    model, _, out, _ = setup
    meta = {p.key: p.value for p in onnx.load(str(out / contract.ENCODER)).metadata_props}
    window, shift = model.encoder.chunk_window(CHUNK)
    assert {k: meta[k] for k in contract.STREAMING_METADATA} == {
        "num_encoder_layers": "2", "T": str(window), "decode_chunk_len": str(shift), "left_context": str(LEFT),
        "encoder_dim": "32", "pad_length": "3", "cnn_module_kernel": str(model.encoder.kernel_size)}
    assert meta["model_type"] == "conformer"


def test_sherpa_online_greedy_equals_pytorch_chunked(setup):
    model, tokenizer, out, wavs = setup
    emitted = 0
    for path, samples in wavs:
        ref = pytorch_streaming(model, samples, "greedy_search")
        r = sherpa_online(out, samples, "greedy_search")
        assert r.tokens == sherpa_symbols(tokenizer, ref.tokens), path
        assert r.timestamps == pytest.approx([0.04 * t for t in ref.timestamps], abs=1e-6), path
        assert OnnxGreedyDecoder(out).decode_features(fbank_extractor().extract(samples[None], 16000)) == ref.tokens
        emitted += len(ref.tokens)
    assert emitted > 3 * len(wavs)


def test_sherpa_online_modified_beam_equals_pytorch_chunked(setup):
    """Final choice by log-probability / (tokens + context_size), as sherpa-onnx does."""
    model, tokenizer, out, wavs = setup
    c = model.decoder.context_size
    for path, samples in wavs:
        hyps = pytorch_streaming(model, samples, "modified_beam_search").hyps
        best = max(hyps, key=lambda h: h.score / (len(h.tokens) + c))
        assert sherpa_online(out, samples, "modified_beam_search").tokens == sherpa_symbols(tokenizer, best.tokens)
