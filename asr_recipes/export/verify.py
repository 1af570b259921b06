"""Check exported graphs against the PyTorch model they came from, with onnxruntime.

Random inputs of other sizes than the traced ones (so a size baked into a graph shows up):

    offline:   encoder on a padded batch of two lengths (valid frames and lengths compared),
               decoder on contexts with sherpa's -1 start marker, joiner on random pairs;
    streaming: one stream alone for a few chunks, then stacked with a fresh one, so the
               batch carries different caches and processed_lens, chunk after chunk;
               outputs and every new state compared every chunk;
    CTC:       the CTC graph like its encoder (offline or streaming), log-probabilities compared.

A graph that differs beyond float32 noise raises ExportError. ``check_int8`` only bounds
the int8 copies' deviation loosely (quantization changes values by design; the deployment
check measures what that does to WER).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asr_recipes.chunk_windows import FULL, ChunkWindows
from asr_recipes.export import contract
from asr_recipes.export.compat import ExportError
from asr_recipes.export.wrappers import Decoder, Joiner, OfflineCtc, OfflineEncoder, streaming_encoder

#: allowed max |onnx - torch| relative to max |torch| (plus the same absolute floor):
#: float32 kernels in another order give ~1e-6; a wrong graph gives O(1)
RTOL = 1e-4
#: int8 copies: relative deviation of the encoder output above which the copy is rejected
INT8_RTOL = 0.5


def session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    scale = max(float(np.abs(ref).max()) if ref.size else 0.0, 1.0)
    return float(np.abs(got - ref).max()) / scale if ref.size else 0.0


def _check(name: str, got: np.ndarray, ref: torch.Tensor, errors: dict, path: Path) -> None:
    ref = ref.detach().numpy()
    if got.shape != ref.shape:
        raise ExportError(f"{path.name}: output {name} has shape {got.shape}, PyTorch gives {ref.shape}; the "
                          "exported graph is wrong (please report this as a bug)")
    err = relative_error(got, ref)
    errors[name] = max(errors.get(name, 0.0), err)
    if not err <= RTOL:
        raise ExportError(f"{path.name}: output {name} differs from PyTorch by {err:.3g} (relative; allowed "
                          f"{RTOL:g}); the exported graph is wrong (please report this as a bug)")


def _features(generator: torch.Generator, N: int, T: int, F: int) -> torch.Tensor:
    return torch.randn(N, T, F, generator=generator) * 3.0 - 8.0  # roughly log-mel fbank's range


@torch.no_grad()
def verify_offline_encoder(model, path: Path, head: str = "transducer") -> dict[str, float]:
    """encoder.onnx (or, head "ctc", ctc.onnx) of the offline layout against PyTorch."""
    g = torch.Generator().manual_seed(0)
    errors: dict[str, float] = {}
    sess = session(path)
    wrapper = (OfflineEncoder(model) if head == "transducer" else OfflineCtc(model)).eval()
    names = contract.OFFLINE_ENCODER_OUTPUTS if head == "transducer" else contract.CTC_OUTPUTS
    for lens in ([301, 177, 38], [9]):
        x = _features(g, len(lens), max(lens), model.encoder.feature_dim)
        x_lens = torch.tensor(lens, dtype=torch.int64)
        ref, ref_lens = wrapper(x, x_lens)
        out, out_lens = _run(sess, path, {"x": x.numpy(), "x_lens": x_lens.numpy()})
        _check(names[1], out_lens, ref_lens, errors, path)
        for n, t in enumerate(ref_lens.tolist()):  # frames past a length are padding: not compared
            _check(names[0], out[n, :t], ref[n, :t], errors, path)
    return errors


def _run(sess, path: Path, feed: dict) -> list:
    """sess.run, with onnxruntime's failure (a size baked into the graph) as ExportError."""
    try:
        return sess.run(None, feed)
    except Exception as e:  # onnxruntime raises its own exception types
        raise ExportError(f"{path.name}: onnxruntime cannot run the exported graph at other sizes than the traced "
                          f"ones ({str(e).splitlines()[0][:300]}); please report this as a bug") from None


def _stack(states: list[torch.Tensor], more: list[torch.Tensor], axes) -> list[torch.Tensor]:
    return [torch.cat([a, b], dim=axis) for a, b, axis in zip(states, more, axes)]


@torch.no_grad()
def verify_streaming_encoder(model, path: Path, chunk_size: int, left_context: int, num_chunks: int | None = None,
                             head: str = "transducer") -> dict[str, float]:
    """encoder.onnx (or, head "ctc", ctc.onnx) of the streaming layout against PyTorch."""
    g = torch.Generator().manual_seed(0)
    errors: dict[str, float] = {}
    sess = session(path)
    encoder = streaming_encoder(model, chunk_size, left_context, head).eval()
    # enough chunks to fill the left context and go past it
    num_chunks = num_chunks or left_context // chunk_size + 3
    lead = 2  # chunks stream 0 runs alone before stream 1 joins
    F = model.encoder.feature_dim
    feats = _features(g, 2, (num_chunks + lead + 1) * encoder.decode_chunk_len + encoder.T, F)
    # the windows sherpa-onnx decodes (the chunk loop of StreamingRecognizer and onnx_greedy)
    starts = [s for s, _ in ChunkWindows(encoder.T, encoder.decode_chunk_len, last=FULL).windows(feats.size(1))]

    def step(x, states, processed):
        inputs = encoder.graph_inputs(x, states, processed)
        ref = encoder(*inputs)
        out = _run(sess, path, {name: t.numpy() for name, t in zip(encoder.input_names, inputs)})
        for name, o, r in zip(encoder.output_names, out, ref):
            _check(name, o, r, errors, path)
        return list(ref[1:])  # carry PyTorch's states: each chunk is compared from the same input

    states = encoder.initial_states(1)
    for start in starts[:lead]:
        states = step(feats[:1, start : start + encoder.T], states, torch.tensor([start], dtype=torch.int64))
    states = _stack(states, encoder.initial_states(1), encoder.state_batch_axes)
    for k in range(num_chunks):
        pair = [starts[lead + k], starts[k]]
        x = torch.stack([feats[0, pair[0] : pair[0] + encoder.T], feats[1, pair[1] : pair[1] + encoder.T]])
        states = step(x, states, torch.tensor(pair, dtype=torch.int64))
    return errors


@torch.no_grad()
def verify_decoder_joiner(model, decoder_path: Path, joiner_path: Path) -> dict[str, float]:
    g = torch.Generator().manual_seed(1)
    errors: dict[str, float] = {}
    c, V = model.decoder.context_size, model.vocab_size
    y = torch.randint(0, V, (7, c), generator=g)
    y[0] = contract.START_CONTEXT  # sherpa's start context [-1, ..., -1, 0]
    y[0, -1] = contract.BLANK_ID
    y[1, : c - 1] = contract.START_CONTEXT
    ref = Decoder(model).eval()(y)
    (out,) = session(decoder_path).run(None, {"y": y.numpy()})
    _check("decoder_out", out, ref, errors, decoder_path)
    J = model.joiner.output_linear.in_features
    enc, dec = torch.randn(5, J, generator=g), torch.randn(5, J, generator=g)
    ref = Joiner(model).eval()(enc, dec)
    (out,) = session(joiner_path).run(None, {"encoder_out": enc.numpy(), "decoder_out": dec.numpy()})
    _check("logit", out, ref, errors, joiner_path)
    return errors


def _random_feed(sess, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One input of every kind the graphs take: 200 frames of fbank-like features (or the
    streaming window, with zero states), token 2 in every decoder slot, random joiner inputs.
    Dynamic axes (named, not sized) get batch 2 and 200 frames."""
    feed = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) else (200 if i == 1 and inp.name == "x" else 2)
                 for i, d in enumerate(inp.shape)]
        if inp.name == "x":
            feed["x"] = (rng.standard_normal(shape) * 3.0 - 8.0).astype(np.float32)
        elif inp.name == "x_lens":
            feed["x_lens"] = np.full(shape, feed["x"].shape[1], dtype=np.int64)
        elif inp.name == "y":
            feed["y"] = np.full(shape, 2, dtype=np.int64)
        elif inp.name in contract.JOINER_INPUTS:
            feed[inp.name] = rng.standard_normal(shape).astype(np.float32)
        else:  # a streaming encoder's caches and frame counts: a stream's start
            feed[inp.name] = np.zeros(shape, dtype=np.int64 if inp.type == "tensor(int64)" else np.float32)
    return feed


def check_int8(out_dir: Path) -> dict[str, float]:
    """Relative deviation of each int8 graph's first output from its fp32 graph's on one
    random input; ExportError if it is not finite or deviates by more than INT8_RTOL."""
    rng = np.random.default_rng(0)
    errors = {}
    pairs = dict(contract.INT8)
    if (out_dir / contract.CTC).is_file():
        pairs[contract.CTC] = contract.CTC_INT8
    for name, int8 in pairs.items():
        fp32_sess, int8_sess = session(out_dir / name), session(out_dir / int8)
        feed = _random_feed(fp32_sess, rng)
        ref, got = fp32_sess.run(None, feed)[0], int8_sess.run(None, feed)[0]
        err = relative_error(got, ref)
        errors[int8] = err
        if not np.isfinite(got).all() or not err <= INT8_RTOL:
            raise ExportError(f"{int8}: the int8 copy deviates from {name} by {err:.3g} (relative); quantization "
                              "broke this model: deploy the fp32 files (export without int8=true)")
    return errors
