"""The tiny trained model, exported, decodes generated audio files to the same tokens in
sherpa-onnx (greedy and modified beam search, fp32), in our torch-free onnxruntime greedy
decoder, and in PyTorch (greedy search with one symbol per frame, on our own features); the
int8 joiner's logits stay within the error that its quantization allows."""

import json
import subprocess
import sys

import pytest
import torch

from asr_recipes.checkpoint import load_checkpoint, model_from_checkpoint
from asr_recipes.data.features import fbank_extractor
from asr_recipes.decoding import DecodingOptions, make_search
from asr_recipes.export import contract
from tests.export.exported import exported, offline_checkpoint, wav_files

sherpa_onnx = pytest.importorskip("sherpa_onnx")


@pytest.fixture(scope="module")
def setup(tiny_corpus, tmp_path_factory):
    ckpt = offline_checkpoint(tiny_corpus, tmp_path_factory)
    out = exported("offline", ckpt, tmp_path_factory)
    model, tokenizer = model_from_checkpoint(load_checkpoint(ckpt))
    wavs = wav_files(tiny_corpus, tmp_path_factory.mktemp("wavs"))
    return model, tokenizer, out, wavs


def sherpa_symbols(tokenizer, ids):
    """What sherpa-onnx's result.tokens shows for our ids: the symbol, a leading \u2581 as a space."""
    symbols = [tokenizer.id_to_token(i) for i in ids]
    return [" " + s[1:] if s.startswith("\u2581") else s for s in symbols]


@torch.no_grad()
def pytorch_results(model, samples, method):
    feats = torch.from_numpy(fbank_extractor().extract(samples[None], 16000))  # (T, 80), as in training
    enc, lens = model.encode(feats[None], torch.tensor([feats.size(0)]))
    search = make_search(model, DecodingOptions(method, beam=4, max_sym_per_frame=1))
    return search.search(enc, lens)[0]


def sherpa_decode(out, wavs, method, suffix=""):
    recognizer = sherpa_onnx.OfflineRecognizer.from_transducer(
        encoder=str(out / f"encoder{suffix}.onnx"), decoder=str(out / f"decoder{suffix}.onnx"),
        joiner=str(out / f"joiner{suffix}.onnx"), tokens=str(out / "tokens.txt"), num_threads=1,
        decoding_method=method, max_active_paths=4)
    streams = []
    for _, samples in wavs:
        s = recognizer.create_stream()
        s.accept_waveform(16000, samples)
        streams.append(s)
    recognizer.decode_streams(streams)  # one padded batch, as a server would decode them
    return [s.result for s in streams]


def test_sherpa_greedy_equals_pytorch_greedy(setup):
    model, tokenizer, out, wavs = setup
    results = sherpa_decode(out, wavs, "greedy_search")
    emitted = 0
    for (path, samples), r in zip(wavs, results):
        ref = pytorch_results(model, samples, "greedy_search")
        assert r.tokens == sherpa_symbols(tokenizer, ref.tokens), path
        assert r.timestamps == pytest.approx([0.04 * t for t in ref.timestamps], abs=1e-6), path
        emitted += len(ref.tokens)
    assert emitted > 3 * len(wavs)  # the comparison is not between empty outputs


def test_sherpa_modified_beam_search_equals_pytorch(setup):
    """Both pick the final hypothesis by log-probability / (tokens + context_size) (sherpa's
    GetMostProbable(length_norm=true)), so with the same beam they give the same tokens. (That
    this also equals greedy search needs an accurate model, not this rigged one: the
    deployment check measures it on the mini recipe's model.)"""
    model, tokenizer, out, wavs = setup
    for (path, samples), r in zip(wavs, sherpa_decode(out, wavs, "modified_beam_search")):
        best = pytorch_results(model, samples, "modified_beam_search")
        assert r.tokens == sherpa_symbols(tokenizer, best.tokens), path
        assert best.tokens, path


def test_onnxruntime_greedy_without_torch_equals_pytorch(setup):
    """Our reference decoder, run in a process that never imports torch, fp32 and int8."""
    model, tokenizer, out, wavs = setup
    script = (
        "import json, sys, soundfile\n"
        "from asr_recipes.export.onnx_greedy import OnnxGreedyDecoder, fbank\n"
        "res = {}\n"
        "for int8 in (False, True):\n"
        "    d = OnnxGreedyDecoder(sys.argv[1], int8=int8)\n"
        "    res[str(int8)] = [d.decode_features(fbank(soundfile.read(p, dtype='float32')[0])) for p in sys.argv[2:]]\n"
        "assert 'torch' not in sys.modules, 'the onnxruntime decoder imported torch'\n"
        "print(json.dumps(res))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(out), *(str(p) for p, _ in wavs)],
                          capture_output=True, text=True, check=True)
    got = json.loads(proc.stdout)
    for (path, samples), tokens in zip(wavs, got["False"]):
        assert tokens == pytorch_results(model, samples, "greedy_search").tokens, path
    assert len(got["True"]) == len(wavs)  # the int8 graphs load and run without torch too


@torch.no_grad()
def test_int8_joiner_logits_are_within_the_quantization_error(setup):
    """joiner.int8.onnx = the fp32 graph with output_linear's MatMul dynamically quantized
    (onnxruntime: int8 weights, one symmetric scale for the tensor; uint8 activations, one scale
    per call from the range of the batch, zero exactly representable). For a = tanh(enc + dec)
    and logit_j = sum_i a_i W_ij + b_j, rounding each weight by at most dw = max|W| / 254 and each
    activation by at most da = (max(a, 0) - min(a, 0)) / 510 moves a logit by at most
    da * sum_i (|W_ij| + dw) + dw * sum_i |a_i|. Checked on the encoder frames of the test files
    paired with the decoder states of their greedy hypotheses, as the searches pair them."""
    import onnxruntime

    model, tokenizer, out, wavs = setup
    c = model.decoder.context_size
    enc_rows, dec_rows = [], []
    for _, samples in wavs[:4]:
        feats = torch.from_numpy(fbank_extractor().extract(samples[None], 16000))  # (T, 80)
        enc, lens = model.encode(feats[None], torch.tensor([feats.size(0)]))  # (1, T', De)
        hyp = pytorch_results(model, samples, "greedy_search").tokens
        contexts = [([0] * c + hyp[:k])[-c:] for k in range(len(hyp) + 1)]  # blank-padded, oldest first
        dec = model.decoder(torch.tensor(contexts), need_pad=False)[:, 0]  # (K, Dd)
        enc_j = model.joiner.encoder_proj(enc[0, : int(lens[0])])  # (T', J)
        dec_j = model.joiner.decoder_proj(dec)  # (K, J)
        enc_rows.append(enc_j.repeat_interleave(len(contexts), 0))  # (T' K, J): every frame with every state
        dec_rows.append(dec_j.repeat(enc_j.size(0), 1))
    enc_out, dec_out = torch.cat(enc_rows), torch.cat(dec_rows)  # (N, J) each

    def logits(name):
        session = onnxruntime.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"encoder_out": enc_out.numpy(), "decoder_out": dec_out.numpy()})[0])

    fp32, int8 = logits(contract.JOINER), logits(contract.INT8[contract.JOINER])
    expected = model.joiner(enc_out, dec_out, project_input=False)  # (N, V)
    torch.testing.assert_close(fp32, expected, rtol=1e-4, atol=1e-4)  # float32 graph = PyTorch
    a = (enc_out + dec_out).tanh()  # (N, J): the quantized MatMul's input
    w = model.joiner.output_linear.weight.T  # (J, V)
    dw = float(w.abs().max()) / 254
    da = float(a.max().clamp(min=0) - a.min().clamp(max=0)) / 510
    bound = da * (w.abs() + dw).sum(0)[None, :] + dw * a.abs().sum(1, keepdim=True)  # (N, V)
    err = (int8 - fp32).abs()
    assert (err <= bound * 1.001 + 1e-5).all(), float((err / bound).max())
    assert err.max() > 0  # the weights were quantized (the int8 file is not a copy)
    assert float((err / bound).max()) > 0.05  # the bound is not vacuous: errors reach a share of it


def test_files_names_shapes_and_metadata(setup):
    import onnx

    model, tokenizer, out, _ = setup
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [contract.ENCODER, contract.DECODER, contract.JOINER, contract.TOKENS, contract.EXPORT_INFO,
         *contract.INT8.values()])

    def io(name):
        g = onnx.load(str(out / name)).graph
        dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
        return ([(v.name, v.type.tensor_type.elem_type, dims(v)) for v in g.input],
                [(v.name, v.type.tensor_type.elem_type, dims(v)) for v in g.output])

    F, I64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    J, V, c = 32, tokenizer.vocab_size, model.decoder.context_size
    ins, outs = io(contract.ENCODER)
    assert [(n, t) for n, t, _ in ins] == [("x", F), ("x_lens", I64)]
    assert ins[0][2][2] == 80 and all(isinstance(d, str) for d in ins[0][2][:2])  # (N, T, 80): N, T dynamic
    assert [(n, t) for n, t, _ in outs] == [("encoder_out", F), ("encoder_out_lens", I64)]
    assert outs[0][2][2] == J
    assert io(contract.DECODER) == ([("y", I64, ["N", c])], [("decoder_out", F, ["N", J])])
    assert io(contract.JOINER) == ([("encoder_out", F, ["N", J]), ("decoder_out", F, ["N", J])],
                                   [("logit", F, ["N", V])])
    meta = lambda name: {p.key: p.value for p in onnx.load(str(out / name)).metadata_props}  # noqa: E731
    assert meta(contract.ENCODER)["model_type"] == "conformer"
    assert {k: meta(contract.DECODER)[k] for k in ("vocab_size", "context_size")} == {"vocab_size": str(V),
                                                                                    "context_size": str(c)}
    assert meta(contract.INT8[contract.DECODER])["context_size"] == str(c)
    lines = (out / contract.TOKENS).read_text(encoding="utf-8").splitlines()
    assert lines == [f"{tokenizer.id_to_token(i)} {i}" for i in range(V)] and lines[0] == "<blk> 0"
