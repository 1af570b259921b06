"""Write the encoder, decoder and joiner graphs (and the CTC graph of a model with a CTC head)
(torch.onnx) with sherpa-onnx's names, dynamic axes and metadata, and their int8 copies
(onnxruntime dynamic quantization).

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
from asr_recipes.export.wrappers import Decoder, Joiner, OfflineCtc, OfflineEncoder, streaming_encoder
from asr_recipes.models.zipformer import Zipformer

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


def model_type(model) -> str:
    """The transducer encoder's sherpa-onnx model_type (contract.MODEL_TYPES)."""
    return contract.MODEL_TYPES["zipformer" if isinstance(model.encoder, Zipformer) else "conformer"]


def _offline_example(model) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(2, 123, model.encoder.feature_dim)  # (N, T, F): traced sizes, not baked in
    return x, torch.tensor([123, 100], dtype=torch.int64)


def export_offline_encoder(model, path: Path, comment: str) -> None:
    """encoder.onnx of the offline layout (contract.OFFLINE_ENCODER_*), batch and time dynamic."""
    axes = {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "encoder_out": {0: "N", 1: "T_out"},
            "encoder_out_lens": {0: "N"}}
    _export(OfflineEncoder(model), _offline_example(model), path, contract.OFFLINE_ENCODER_INPUTS,
            contract.OFFLINE_ENCODER_OUTPUTS, axes, {"model_type": model_type(model), **_common(comment)})


def export_offline_ctc(model, path: Path, comment: str) -> None:
    """ctc.onnx of the offline CTC layout (contract.CTC_*): batch and time dynamic, the
    vocabulary axis fixed (sherpa reads the vocabulary size from it)."""
    axes = {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "log_probs": {0: "N", 1: "T_out"}, "log_probs_len": {0: "N"}}
    _export(OfflineCtc(model), _offline_example(model), path, contract.CTC_INPUTS, contract.CTC_OUTPUTS, axes,
            {"model_type": contract.CTC_MODEL_TYPE, "vocab_size": model.vocab_size, **_common(comment)})


def export_streaming_encoder(model, path: Path, chunk_size: int, left_context: int, comment: str,
                             head: str = "transducer") -> None:
    """encoder.onnx (or, head "ctc", ctc.onnx) of the encoder family's streaming layout
    (wrappers.streaming_encoder), batch dynamic; the window length T is fixed (metadata), as
    sherpa always feeds T frames."""
    wrapper = streaming_encoder(model, chunk_size, left_context, head)
    N = 2
    x = torch.zeros(N, wrapper.T, model.encoder.feature_dim)
    args = wrapper.graph_inputs(x, wrapper.initial_states(N), torch.zeros(N, dtype=torch.int64))
    meta = {**wrapper.metadata(), **_common(comment)}
    if head == "ctc":
        meta["vocab_size"] = model.vocab_size
    _export(wrapper, args, path, wrapper.input_names, wrapper.output_names, wrapper.dynamic_axes(), meta)


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
    """int8 copies (contract.INT8, contract.CTC_INT8 when there is a CTC graph) with dynamically
    quantized weights: MatMul everywhere, plus the decoder's embedding (Gather), as icefall's
    exports do. Convolutions stay float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graphs = [(contract.ENCODER, contract.INT8[contract.ENCODER], ["MatMul"]),
              (contract.DECODER, contract.INT8[contract.DECODER], ["MatMul", "Gather"]),
              (contract.JOINER, contract.INT8[contract.JOINER], ["MatMul"])]
    if (out_dir / contract.CTC).is_file():
        graphs.append((contract.CTC, contract.CTC_INT8, ["MatMul"]))
    for name, int8_name, ops in graphs:
        # onnxruntime logs a line per tensor (and advice about calibration) on the root logger
        logging.disable(logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(model_input=out_dir / name, model_output=out_dir / int8_name,
                                 op_types_to_quantize=ops, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        # quantize_dynamic keeps metadata_props; check it did, sherpa needs them
        if read_metadata(out_dir / int8_name) != read_metadata(out_dir / name):
            add_metadata(out_dir / int8_name, read_metadata(out_dir / name), replace=True)
