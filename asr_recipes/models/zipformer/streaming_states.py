"""The Zipformer's streaming states: what they hold, and stacking streams into batches.

The states are one flat list of tensors, icefall's layout and order (so the ONNX streaming
export can hand them to sherpa-onnx's Zipformer unchanged):

    for every layer of every stack, in order, 6 caches (layer.LAYER_CACHE_NAMES):
        cached_key          (L_i, N, H_i * query_head_dim_i)   attention keys
        cached_nonlin_attn  (1, N, L_i, 3 * D_i / 4)           NonlinAttention's gated inputs
        cached_val1         (L_i, N, H_i * value_head_dim_i)   SelfAttention1 values
        cached_val2         (L_i, N, H_i * value_head_dim_i)   SelfAttention2 values
        cached_conv1        (N, D_i, K_i // 2)                 ConvolutionModule1 inputs
        cached_conv2        (N, D_i, K_i // 2)                 ConvolutionModule2 inputs
    embed_cache             (N, 128, 3, F')                    the front end's ConvNeXt look-back
    processed_lens          (N,) int64                         50 Hz frames processed so far

L_i = 2 * left_context // ds_i: the left context at stack i's frame rate (caches hold the
newest L_i frames, oldest first; slots older than the stream's start are masked using
processed_lens). The batch axis is 1 for keys, values and the nonlinear-attention cache, 0 for
the rest; stack_states / unstack_states handle that.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _batch_axes(num_layers: int) -> list[int]:
    return [1, 1, 1, 1, 0, 0] * num_layers + [0, 0]


class StreamingStates:
    """Mixed into Zipformer (which provides the attributes used here)."""

    def init_states(self, batch_size: int, left_context: int, device: torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> list[Tensor]:
        """States before the first chunk of ``batch_size`` streams that attend to
        ``left_context`` encoder frames (40 ms) before each chunk: all zeros."""
        if not self.causal:
            raise ValueError("streaming needs a causal model (model.causal=true); this one looks ahead")
        if left_context < 0:
            raise ValueError(f"streaming needs a finite left_context (encoder frames), got {left_context}")
        N, states = batch_size, []
        for i, ds in enumerate(self.downsampling_factor):
            L, D = 2 * left_context // ds, self.encoder_dim[i]
            key_dim = self.num_heads[i] * self.query_head_dim[i]
            value_dim = self.num_heads[i] * self.value_head_dim[i]
            conv_context = self.cnn_module_kernel[i] // 2
            for _ in range(self.num_encoder_layers[i]):
                shapes = [(L, N, key_dim), (1, N, L, 3 * D // 4), (L, N, value_dim), (L, N, value_dim),
                          (N, D, conv_context), (N, D, conv_context)]
                states += [torch.zeros(s, device=device, dtype=dtype) for s in shapes]
        states.append(self.encoder_embed.init_cache(N, device, dtype))
        states.append(torch.zeros(N, dtype=torch.int64, device=device))
        return states

    def stack_states(self, states: list[list[Tensor]]) -> list[Tensor]:
        """Per-stream states (each from init_states(1, ...) or unstack_states) -> one batch."""
        axes = _batch_axes(sum(self.num_encoder_layers))
        return [torch.cat([s[k] for s in states], dim=axis) for k, axis in enumerate(axes)]

    def unstack_states(self, states: list[Tensor]) -> list[list[Tensor]]:
        """A batch's states -> one list per stream, each with batch size 1."""
        axes = _batch_axes(sum(self.num_encoder_layers))
        if len(states) != len(axes):
            raise ValueError(f"expected {len(axes)} state tensors for this model, got {len(states)}")
        N = states[-1].size(0)
        return [[t.narrow(axis, n, 1) for t, axis in zip(states, axes)] for n in range(N)]
