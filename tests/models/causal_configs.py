"""Tiny causal model configs (build_transducer mappings) for tests of chunked encoding: a
Conformer, which takes any chunk size, and a Zipformer, whose chunks are multiples of 4 frames."""

CAUSAL_CONFORMER = dict(encoder="conformer", d_model=16, num_heads=2, ff_dim=32, num_layers=1, kernel_size=3,
                        dropout=0.0, subsampling_channels=4, conv_norm="layer", decoder_dim=16, context_size=2,
                        joiner_dim=16, causal=True)
CAUSAL_ZIPFORMER = dict(encoder="zipformer", encoder_dim=[16, 16, 24, 32, 24, 16], encoder_unmasked_dim=12,
                        num_heads=2, query_head_dim=8, value_head_dim=4, pos_head_dim=2, pos_dim=8,
                        feedforward_dim=32, num_encoder_layers=1, cnn_module_kernel=[7, 5, 5, 3, 5, 7],
                        embed_channels=[4, 8, 16], decoder_dim=16, joiner_dim=16, context_size=2, causal=True)
