"""ONNX export for sherpa-onnx: a trained checkpoint -> encoder/decoder/joiner graphs + tokens,
in the layouts of icefall's Conformer or Zipformer transducers (offline or streaming), plus a
CTC graph for a model with a CTC head.

    contract.py     file names, tensor names, shapes and metadata sherpa-onnx reads (no torch)
    compat.py       what sherpa-onnx cannot run correctly is refused; settings it runs worse warned about
    wrappers.py     the graphs as torch modules around the model's own modules (one streaming
                    wrapper per encoder family, one interface)
    graphs.py       torch.onnx export with names, dynamic axes, metadata; int8 copies
    verify.py       onnxruntime output == PyTorch output, or ExportError
    exporter.py     export_checkpoint(): temp dir, checks (incl. sherpa-onnx itself), rename
    onnx_greedy.py  greedy decoding with onnxruntime + numpy only (no torch): the reference
                    for embedding the graphs elsewhere
    deploy_check.py a test set through PyTorch, onnxruntime and sherpa-onnx, fp32 and int8

Nothing here imports training code, and importing this package (or contract / onnx_greedy)
does not import torch.
"""
