"""The file layout, tensor names and metadata that sherpa-onnx reads: one place, no torch.

Read from sherpa-onnx's C++ sources (sherpa-onnx/csrc at the 2.0 line):

Offline transducer (``OfflineRecognizer.from_transducer``; offline-transducer-model.cc,
offline-recognizer-transducer-impl.h, offline-transducer-greedy-search-decoder.cc):

    encoder.onnx  x (N, T, 80) float32 fbank, x_lens (N,) int64 feature frames
                  -> encoder_out (N, T', J) float32, encoder_out_lens (N,) int64
                  encoder_out is already the joiner's encoder projection. sherpa pads a
                  batch's features with log(1e-10); our encoder masks padding anyway.
                  metadata: model_type = "conformer" (what selects the transducer
                  recognizer when no model_type is configured).
    decoder.onnx  y (N, context_size) int64 -> decoder_out (N, J) float32 (the joiner's
                  decoder projection applied). sherpa starts every hypothesis with the
                  context [-1, ..., -1, 0]; -1 means "before the start" and must act as blank.
                  metadata: vocab_size, context_size (read; a missing key is fatal).
    joiner.onnx   encoder_out (N, J), decoder_out (N, J) -> logit (N, V) float32, unnormalised.
    tokens.txt    "<symbol> <id>" per line; "<unk>" is a second blank in the searches; a
                  leading "\u2581" is shown as a space. Blank must be id 0 (hard-coded).

Both searches emit at most one symbol per encoder frame.

Online (streaming) Conformer transducer (``OnlineRecognizer.from_transducer``;
online-conformer-transducer-model.cc, online-recognizer-transducer-impl.h):

    encoder.onnx  x (N, T, 80), cached_attn (L, left, N, D), cached_conv (L, k-1, N, D),
                  processed_lens (N,) int64
                  -> encoder_out (N, chunk, J), new_cached_attn, new_cached_conv
                  Inputs and outputs are taken by position. sherpa feeds windows of T
                  feature frames, one every decode_chunk_len frames, a window only once
                  processed + T < frames available (so the last partial window is never
                  decoded: clients append tail padding), and passes as processed_lens the
                  number of FEATURE frames before the window.
                  metadata: model_type = "conformer", num_encoder_layers (L), T,
                  decode_chunk_len, left_context, encoder_dim (D), pad_length,
                  cnn_module_kernel (k). Initial caches are zeros.
    decoder.onnx, joiner.onnx, tokens.txt: as offline.

Zipformer transducers (icefall's zipformer/export-onnx.py and export-onnx-streaming.py;
online-zipformer2-transducer-model.cc). Offline: as above with model_type = "zipformer2".
Streaming (``OnlineRecognizer.from_transducer``, model_type = "zipformer2"):

    encoder.onnx  x (N, T, 80), then per layer l of every stack, in order (L_l: the stack's
                  left context at its frame rate, H heads, D width, K conv kernel):
                      cached_key_l (L_l, N, H * query_head_dim), cached_nonlin_attn_l
                      (1, N, L_l, 3 D / 4), cached_val1_l and cached_val2_l (L_l, N,
                      H * value_head_dim), cached_conv1_l and cached_conv2_l (N, D, K // 2);
                  embed_states (N, 128, 3, 19), processed_lens (N,) int64 (50 Hz frames)
                  -> encoder_out (N, chunk, J), then new_<name> for every state, same order.
                  Inputs and outputs are taken by position; the states are opaque to sherpa:
                  it builds zeros of these shapes from the metadata (embed_states always with
                  128 channels), carries outputs 1.. to the next chunk and stacks/unstacks
                  streams on the batch axes (1 for keys, nonlinear attention and values, 0
                  otherwise). It ignores its own frame count here (processed_lens is a state).
                  Windows as for the Conformer: T every decode_chunk_len feature frames.
                  metadata (comma-separated per stack where plural): model_type, T,
                  decode_chunk_len, num_encoder_layers, encoder_dims, cnn_module_kernels,
                  left_context_len, query_head_dims, value_head_dims, num_heads.

CTC graphs (a model with a CTC head; ctc.onnx beside the transducer files, same tokens.txt;
sherpa's CTC greedy search: argmax per frame, repeats merged, blank dropped; the symbol
"<blk>" must be in tokens.txt; subsampling 4 assumed for timestamps):

    offline    ``OfflineRecognizer.from_zipformer_ctc(model=, tokens=)`` (offline-zipformer-ctc-model.cc;
               icefall's zipformer/export-onnx-ctc.py): x (N, T, 80), x_lens (N,) int64 ->
               log_probs (N, T', V) float32 (V fixed in the graph: sherpa reads the vocabulary
               size from this shape), log_probs_len (N,) int64; metadata model_type =
               "zipformer2_ctc" (what selects the CTC recognizer). Nothing in this layout is
               Zipformer-specific: sherpa computes the transducers' fbank and runs the graph,
               so a Conformer's CTC graph runs in it too.
    streaming  ``OnlineRecognizer.from_zipformer2_ctc(model=, tokens=)`` (online-zipformer2-ctc-model.cc;
               export-onnx-streaming-ctc.py): the streaming Zipformer encoder's inputs, outputs
               and metadata with log_probs (N, chunk, V) in place of encoder_out. Zipformer only:
               the states are built from Zipformer metadata, and sherpa's other streaming CTC
               layouts compute other features (NeMo: librosa-style mel; WeNet: unnormalised
               dithered samples; T-one: its own frames), so no layout fits a Conformer's caches.
"""

ENCODER, DECODER, JOINER, TOKENS = "encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt"
#: dynamically quantized (int8 weights) copies, written with ``int8=true``
INT8 = {name: name.replace(".onnx", ".int8.onnx") for name in (ENCODER, DECODER, JOINER)}
#: what the exporter records about itself (checkpoint, settings, verification numbers)
EXPORT_INFO = "export.json"

MODEL_TYPE = "conformer"
#: model_type of the transducer encoders, by the model config's ``encoder``
MODEL_TYPES = {"conformer": MODEL_TYPE, "zipformer": "zipformer2"}

OFFLINE_ENCODER_INPUTS = ("x", "x_lens")
OFFLINE_ENCODER_OUTPUTS = ("encoder_out", "encoder_out_lens")
STREAMING_ENCODER_INPUTS = ("x", "cached_attn", "cached_conv", "processed_lens")
STREAMING_ENCODER_OUTPUTS = ("encoder_out", "new_cached_attn", "new_cached_conv")
DECODER_INPUTS, DECODER_OUTPUTS = ("y",), ("decoder_out",)
JOINER_INPUTS, JOINER_OUTPUTS = ("encoder_out", "decoder_out"), ("logit",)

#: metadata keys sherpa reads from a streaming Conformer encoder (all integers)
STREAMING_METADATA = ("num_encoder_layers", "T", "decode_chunk_len", "left_context", "encoder_dim",
                      "pad_length", "cnn_module_kernel")

#: the features sherpa-onnx computes (kaldi-native-fbank; features.h defaults, which
#: OfflineRecognizer/OnlineRecognizer.from_transducer keep): what a model must be trained on
SHERPA_FEATURES = {"type": "fbank", "num_mel_bins": 80, "sample_rate": 16000, "frame_shift": 0.010,
                   "frame_length": 0.025}
#: kaldi-native-fbank options of those features (besides the sizes above)
SHERPA_FBANK_OPTIONS = {"dither": 0.0, "snip_edges": False, "low_freq": 20.0, "high_freq": -400.0,
                        "window_type": "povey", "preemph_coeff": 0.97, "remove_dc_offset": True}

#: sherpa's blank id (hard-coded in its searches)
BLANK_ID = 0
#: sherpa's "before the start" context entry
START_CONTEXT = -1
#: encoder frames per feature frame that sherpa assumes for timestamps
SUBSAMPLING_FACTOR = 4

# ---------------------------------------------------------------- streaming Zipformer
#: per layer, in this order (models/zipformer/layer.py LAYER_CACHE_NAMES), with the batch axis of each
ZIPFORMER_LAYER_STATES = ("cached_key", "cached_nonlin_attn", "cached_val1", "cached_val2", "cached_conv1",
                          "cached_conv2")
ZIPFORMER_LAYER_BATCH_AXES = (1, 1, 1, 1, 0, 0)
#: the front end's ConvNeXt look-back and the 50 Hz frames processed, after every layer's states
ZIPFORMER_EMBED_STATES, PROCESSED_LENS = "embed_states", "processed_lens"
#: channels of embed_states: sherpa-onnx hard-codes icefall's 128 (a narrower front end is zero-padded)
ZIPFORMER_EMBED_CHANNELS = 128
ZIPFORMER_STREAMING_METADATA = ("T", "decode_chunk_len", "num_encoder_layers", "encoder_dims", "cnn_module_kernels",
                                "left_context_len", "query_head_dims", "value_head_dims", "num_heads")


def zipformer_state_names(num_layers: int) -> list[str]:
    """Input names of the states after x, for ``num_layers`` layers over all stacks."""
    return [f"{name}_{i}" for i in range(num_layers) for name in ZIPFORMER_LAYER_STATES] + [
        ZIPFORMER_EMBED_STATES, PROCESSED_LENS]


def zipformer_state_shapes(meta: dict[str, str], feature_dim: int = 80) -> list[tuple[int, ...]]:
    """The initial state shapes (batch 1) that sherpa-onnx builds from a streaming Zipformer's
    metadata (GetEncoderInitStates), in input order; the last one (processed_lens) is int64."""
    per_stack = {k: [int(v) for v in meta[k].split(",")] for k in (
        "num_encoder_layers", "encoder_dims", "cnn_module_kernels", "left_context_len", "query_head_dims",
        "value_head_dims", "num_heads")}
    shapes = []
    for layers, D, K, L, dq, dv, H in zip(*per_stack.values()):
        layer = [(L, 1, H * dq), (1, 1, L, 3 * D // 4), (L, 1, H * dv), (L, 1, H * dv), (1, D, K // 2), (1, D, K // 2)]
        shapes += layer * layers
    return shapes + [(1, ZIPFORMER_EMBED_CHANNELS, 3, ((feature_dim - 1) // 2 - 1) // 2), (1,)]


# ---------------------------------------------------------------- CTC
CTC = "ctc.onnx"
CTC_INT8 = "ctc.int8.onnx"
CTC_INPUTS, CTC_OUTPUTS = ("x", "x_lens"), ("log_probs", "log_probs_len")
#: model_type of the offline CTC graph (sherpa's name for this generic layout)
CTC_MODEL_TYPE = "zipformer2_ctc"
#: encoders whose streaming CTC graph sherpa-onnx can run (see the module docstring)
STREAMING_CTC_ENCODERS = ("zipformer",)
