"""Write the encoder, decoder and joiner graphs (torch.onnx) with sherpa-onnx's names,
dynamic axes and metadata, and their int8 copies (onnxruntime dynamic quantization).

The TorchScript-based exporter (``dynamo=False``) is used, as icefall does: it traces the
model's Python control flow once, which is what these wrappers need (shape checks become
constants; tensor ops, including the data-dependent masks, stay in the graph). The traced
example lengths must differ from the ones verify.py checks, so a size baked in by mistake
shows up there.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch

from asr_recipes.export import contract
from asr_recipes.export.wrappers import Decoder, Joiner, OfflineEncoder, StreamingEncoder

log = logging.getLogger(__name__)

#: ONNX opset: 13 is what icefall's exports use, so every runtime that runs those runs ours
OPSET = 13


def _export(module: torch.nn.Module, args: tuple, path: Path, inputs: tuple, outputs: tuple,
            dynamic_axes: dict, metadata: dict) -> None:
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        # TracerWarnings about Python values (shape checks) and the exporter's deprecation note
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes=dynamic_axes, do_constant_folding=True)
    add_metadata(path, metadata)


def add_metadata(path: Path, metadata: dict, replace: bool = False) -> None:
    """Store ``metadata`` (values as strings, as sherpa reads them) in the model file;
    ``replace``: drop what it held before."""
    model = onnx.load(str(path))
    if replace:
        del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))


def read_metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _common(comment: str) -> dict:
    return {"model_author": "asr-recipes", "comment": comment, "version": "1"}


def export_offline_encoder(model, path: Path, comment: str) -> None:
    """encoder.onnx of the offline layout (contract.OFFLINE_ENCODER_*), batch and time dynamic."""
    x = torch.zeros(2, 123, model.encoder.feature_dim)  # (N, T, F): traced sizes, not baked in
    x_lens = torch.tensor([123, 100], dtype=torch.int64)
    axes = {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "encoder_out": {0: "N", 1: "T_out"},
            "encoder_out_lens": {0: "N"}}
    _export(OfflineEncoder(model), (x, x_lens), path, contract.OFFLINE_ENCODER_INPUTS,
            contract.OFFLINE_ENCODER_OUTPUTS, axes, {"model_type": contract.MODEL_TYPE, **_common(comment)})


def export_streaming_encoder(model, path: Path, chunk_size: int, left_context: int, comment: str) -> None:
    """encoder.onnx of the streaming layout (contract.STREAMING_ENCODER_*), batch dynamic;
    the window length T is fixed (metadata), as sherpa always feeds T frames."""
    wrapper = StreamingEncoder(model, chunk_size, left_context)
    N = 2
    attn, conv = wrapper.initial_states(N)
    x = torch.zeros(N, wrapper.T, model.encoder.feature_dim)
    processed = torch.zeros(N, dtype=torch.int64)
    axes = {"x": {0: "N"}, "cached_attn": {2: "N"}, "cached_conv": {2: "N"}, "processed_lens": {0: "N"},
            "encoder_out": {0: "N"}, "new_cached_attn": {2: "N"}, "new_cached_conv": {2: "N"}}
    meta = {"model_type": contract.MODEL_TYPE, **wrapper.metadata(), "chunk_size": chunk_size, **_common(comment)}
    _export(wrapper, (x, attn, conv, processed), path, contract.STREAMING_ENCODER_INPUTS,
            contract.STREAMING_ENCODER_OUTPUTS, axes, meta)


def export_decoder(model, path: Path, comment: str) -> None:
    c = model.decoder.context_size
    y = torch.zeros(3, c, dtype=torch.int64)  # (N, context_size)
    _export(Decoder(model), (y,), path, contract.DECODER_INPUTS, contract.DECODER_OUTPUTS,
            {"y": {0: "N"}, "decoder_out": {0: "N"}},
            {"vocab_size": model.vocab_size, "context_size": c, **_common(comment)})


def export_joiner(model, path: Path, comment: str) -> None:
    J = model.joiner.output_linear.in_features
    enc, dec = torch.zeros(3, J), torch.zeros(3, J)
    _export(Joiner(model), (enc, dec), path, contract.JOINER_INPUTS, contract.JOINER_OUTPUTS,
            {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logit": {0: "N"}},
            {"joiner_dim": J, **_common(comment)})


def quantize_int8(out_dir: Path) -> None:
    """int8 copies (contract.INT8) with dynamically quantized weights: MatMul everywhere, plus
    the decoder's embedding (Gather), as icefall's exports do. Convolutions stay float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for name, ops in ((contract.ENCODER, ["MatMul"]), (contract.DECODER, ["MatMul", "Gather"]),
                      (contract.JOINER, ["MatMul"])):
        # onnxruntime logs a line per tensor (and advice about calibration) on the root logger
        logging.disable(logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(model_input=out_dir / name, model_output=out_dir / contract.INT8[name],
                                 op_types_to_quantize=ops, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        # quantize_dynamic keeps metadata_props; check it did, sherpa needs them
        if read_metadata(out_dir / contract.INT8[name]) != read_metadata(out_dir / name):
            add_metadata(out_dir / contract.INT8[name], read_metadata(out_dir / name), replace=True)
