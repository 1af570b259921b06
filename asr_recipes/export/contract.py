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
"""

ENCODER, DECODER, JOINER, TOKENS = "encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt"
#: dynamically quantized (int8 weights) copies, written with ``int8=true``
INT8 = {name: name.replace(".onnx", ".int8.onnx") for name in (ENCODER, DECODER, JOINER)}
#: what the exporter records about itself (checkpoint, settings, verification numbers)
EXPORT_INFO = "export.json"

MODEL_TYPE = "conformer"

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
