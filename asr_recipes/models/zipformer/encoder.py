"""Zipformer encoder (Yao et al. 2023, arXiv 2310.11230; icefall's Zipformer2): fbank -> 40 ms frames.

    features (N, T, F) --Conv2dSubsampling--> (N, T50, D0)        50 Hz, T50 = (T - 7) // 2
      --stacks i = 0..5 at 50/ds_i Hz, ds = (1, 2, 4, 8, 4, 2)-->  each (T50, N, D_i)
      --combine: each channel from the last stack that has it--> (T50, N, max D)
      --SimpleDownsample x2--> (N, T', max D)                      25 Hz, T' = (T50 + 1) // 2

Every stack reads the previous stack's output (channels cut or zero-padded to its width D_i).

Streaming (``causal=True``): convolutions see no frame after their chunk, and attention is
limited by a chunk mask. Chunk sizes and left contexts are given in encoder frames of 40 ms
(chunk_size 8 = 320 ms = icefall's --chunk-size 16 at 50 Hz; left_context 64 = icefall's
--left-context-frames 128). The chunk must split evenly at every stack's frame rate:
2 * chunk_size must be a multiple of every downsampling factor (chunk_size a multiple of 4 for
the usual factors). Besides its chunk, the encoder looks 13 feature frames ahead (130 ms: 7
for the convolutions, 2 x 3 for the ConvNeXt). Two ways to run a causal model, with equal
outputs:

* ``forward(x, x_lens, chunk_size, left_context)``: whole utterances with the chunk mask
  (simulated streaming; dynamic chunk training draws chunk_size/left_context per batch);
  chunk_size 0 is full context (what icefall's chunk size -1 does);
* ``streaming_forward(window, window_lens, states)``: chunk by chunk with explicit caches.

Padding never leaks into valid frames, offline or streaming: an utterance's outputs are the
same alone or in a padded batch. icefall's code computes the same for an utterance alone, but
in a padded batch lets padding reach the last few valid frames in three places (the front
end's ConvNeXt, the downsampling's last group, and a causal model's full-context convolution
edge scales): see frontend.py, stack.py and convolution.py.

State-dict names equal icefall's with ``encoder_embed.`` moved under this module: icefall's
``encoder_embed.X`` is ``encoder_embed.X`` here and its ``encoder.X`` is ``X`` (see
icefall_names.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from asr_recipes.models.conformer import chunk_attention_mask, make_pad_mask
from asr_recipes.models.encoder import Encoder
from asr_recipes.models.zipformer.frontend import CONVNEXT_CONTEXT, Conv2dSubsampling
from asr_recipes.models.zipformer.layer import ZipformerLayer
from asr_recipes.models.zipformer.scaling import convert_num_channels
from asr_recipes.models.zipformer.schedule import FloatLike, ScheduledFloat
from asr_recipes.models.zipformer.stack import DownsampledZipformerStack, SimpleDownsample, ZipformerStack
from asr_recipes.models.zipformer.streaming_states import StreamingStates

#: Feature frames a window needs besides 4 per encoder frame: 7 for the convolutions' first
#: output frame, 2 x 3 for the ConvNeXt's look-ahead (icefall's pad_length 7 + 2 * 3).
WINDOW_EXTRA_FRAMES = 7 + 2 * CONVNEXT_CONTEXT

#: Probability that a training utterance zeroes the channels of every stack beyond its
#: unmasked width (half of them; both halves with about twice that probability).
FEATURE_MASK_PROB = 0.125


class Zipformer(StreamingStates, Encoder):
    """Args (one value per stack, or one value for all; icefall's train.py flags):
        feature_dim: F, mel bins.  downsampling_factor: per stack (the first is usually 1).
        encoder_dim, num_encoder_layers, encoder_unmasked_dim, num_heads, query_head_dim,
        pos_head_dim, value_head_dim, feedforward_dim, cnn_module_kernel: per stack.
        pos_dim: width of the positional encodings.
        output_downsampling_factor: 2 (50 Hz -> 25 Hz output).
        dropout: FF dropout (default: a schedule from 0.3 to 0.1 over 20k batches).
        warmup_batches: the layer-drop warm-up length (stacks warm up one after another).
        causal: streaming model (see the module docstring).
        embed_channels: channels of the front end's three convolutions (icefall: 8, 32, 128).

    Attributes (models/encoder.py's contract): feature_dim, output_dim = max(encoder_dim), causal,
    lookahead_frames = 13 (frame t' reads feature frames up to 4t' + 16), chunk_multiple (4 for
    downsampling factors up to 8), skips_modules_in_training (layer and module skipping).
    """

    lookahead_frames = WINDOW_EXTRA_FRAMES
    skips_modules_in_training = True

    def __init__(self, feature_dim: int = 80, downsampling_factor: tuple[int, ...] = (1, 2, 4, 8, 4, 2),
                 encoder_dim: int | tuple[int, ...] = (192, 256, 384, 512, 384, 256),
                 num_encoder_layers: int | tuple[int, ...] = (2, 2, 3, 4, 3, 2),
                 encoder_unmasked_dim: int | tuple[int, ...] = (192, 192, 256, 256, 256, 192),
                 query_head_dim: int | tuple[int, ...] = 32, pos_head_dim: int | tuple[int, ...] = 4,
                 value_head_dim: int | tuple[int, ...] = 12, num_heads: int | tuple[int, ...] = (4, 4, 4, 8, 4, 4),
                 feedforward_dim: int | tuple[int, ...] = (512, 768, 1024, 1536, 1024, 768),
                 cnn_module_kernel: int | tuple[int, ...] = (31, 31, 15, 15, 15, 31), pos_dim: int = 48,
                 output_downsampling_factor: int = 2, dropout: FloatLike | None = None,
                 warmup_batches: float = 4000.0, causal: bool = False,
                 embed_channels: tuple[int, int, int] = (8, 32, 128)):
        super().__init__()
        ds = tuple(downsampling_factor)
        S = len(ds)

        def per_stack(name, value):
            v = (value,) if isinstance(value, int) else tuple(value)
            if len(v) not in (1, S):
                raise ValueError(f"{name} needs 1 or {S} values (one per stack), got {list(v)}")
            return v * S if len(v) == 1 else v

        dims = per_stack("encoder_dim", encoder_dim)
        unmasked = per_stack("encoder_unmasked_dim", encoder_unmasked_dim)
        if any(u > d for u, d in zip(unmasked, dims)):
            raise ValueError(f"encoder_unmasked_dim {list(unmasked)} must not exceed encoder_dim {list(dims)}")
        if output_downsampling_factor != 2:
            raise ValueError("only output_downsampling_factor=2 is supported (the 25 Hz output the joiner reads)")
        layers = per_stack("num_encoder_layers", num_encoder_layers)
        heads, dq = per_stack("num_heads", num_heads), per_stack("query_head_dim", query_head_dim)
        dv, dp = per_stack("value_head_dim", value_head_dim), per_stack("pos_head_dim", pos_head_dim)
        ff, kernels = per_stack("feedforward_dim", feedforward_dim), per_stack("cnn_module_kernel", cnn_module_kernel)
        dropout = ScheduledFloat((0.0, 0.3), (20000.0, 0.1)) if dropout is None else dropout

        self.feature_dim = feature_dim
        self.output_dim = max(dims)
        self.causal = causal
        self.downsampling_factor = ds
        # a chunk of c encoder frames is 2c frames at 50 Hz, which every stack's factor must split
        lcm = math.lcm(*ds)
        self.chunk_multiple = lcm // math.gcd(lcm, 2)
        self.encoder_dim, self.encoder_unmasked_dim = dims, unmasked
        self.num_encoder_layers, self.num_heads = layers, heads
        self.query_head_dim, self.value_head_dim, self.cnn_module_kernel = dq, dv, kernels

        self.encoder_embed = Conv2dSubsampling(feature_dim, dims[0], *embed_channels,
                                               dropout=ScheduledFloat((0.0, 0.3), (20000.0, 0.1)))
        stacks = []
        for i in range(S):
            layer = ZipformerLayer(dims[i], pos_dim, heads[i], dq[i], dp[i], dv[i], ff[i], dropout, kernels[i], causal)
            # the front end learns alone first; then stack after stack starts to warm up
            stack = ZipformerStack(layer, layers[i], pos_dim, warmup_begin=warmup_batches * (i + 1) / (S + 1),
                                   warmup_end=warmup_batches * (i + 2) / (S + 1),
                                   final_layerdrop_rate=0.035 * ds[i] ** 0.5)
            if ds[i] != 1:
                stack = DownsampledZipformerStack(stack, dims[i], ds[i], dropout, causal)
            stacks.append(stack)
        self.encoders = nn.ModuleList(stacks)
        self.downsample_output = SimpleDownsample(self.output_dim, output_downsampling_factor, dropout, causal)

    # ------------------------------------------------------------------ lengths and checks
    @staticmethod
    def output_lengths(num_frames):
        """Encoder frames from feature frames (int or integer tensor): ((T - 7) // 2 + 1) // 2,
        at least 0. T >= 9 gives one frame; the front end computes frame t' from feature frames
        4t' .. 4t' + 16 (lookahead_frames: 13 past its own 4)."""
        out = ((num_frames - 7) // 2 + 1) // 2
        return out.clamp(min=0) if isinstance(out, Tensor) else max(out, 0)

    def _check_chunking(self, chunk_size: int, left_context: int) -> None:
        if chunk_size > 0 and not self.causal:
            raise ValueError(f"chunk_size={chunk_size} needs a streaming model: this encoder was built with "
                             "causal=false (its convolutions look ahead); train with model.causal=true")
        bad = [d for d in self.downsampling_factor if (2 * chunk_size) % d]
        if chunk_size > 0 and bad:
            raise ValueError(f"chunk_size={chunk_size} encoder frames ({2 * chunk_size} at 50 Hz) does not split "
                             f"evenly at downsampling factors {bad}; use a multiple of {self.chunk_multiple}")
        if left_context < -1:
            raise ValueError(f"left_context must be >= 0 encoder frames, or -1 for all, got {left_context}")

    def _check_features(self, x: Tensor, x_lens: Tensor) -> None:
        if x.ndim != 3 or x.size(2) != self.feature_dim:
            raise ValueError(
                f"features must be (N, T, {self.feature_dim}), got {tuple(x.shape)}: the model was built "
                f"for feature_dim={self.feature_dim}; extract features with the same number of mel bins")
        if x_lens.shape != (x.size(0),) or (x_lens.numel() and int(x_lens.max()) > x.size(1)):
            raise ValueError(f"feature lengths must be (N,) = ({x.size(0)},) with values <= T = {x.size(1)}, got "
                             f"shape {tuple(x_lens.shape)} and max {int(x_lens.max()) if x_lens.numel() else None}")

    # ------------------------------------------------------------------ whole utterances
    def _feature_masks(self, N: int, device: torch.device, dtype: torch.dtype) -> list[Tensor | float]:
        """Per stack a (1, N, D_i) channel mask (training) or 1.0: a few utterances use only the
        first encoder_unmasked_dim channels, or half of the rest, in every stack at once."""
        if not self.training:
            return [1.0] * len(self.encoder_dim)
        keep_first = (torch.rand(1, N, 1, device=device) > FEATURE_MASK_PROB).to(dtype)  # (1, N, 1)
        keep_second = keep_first * (torch.rand(1, N, 1, device=device) > FEATURE_MASK_PROB).to(dtype)
        masks = []
        for dim, unmasked in zip(self.encoder_dim, self.encoder_unmasked_dim):
            half = unmasked + (dim - unmasked) // 2
            mask = torch.ones(1, N, dim, device=device, dtype=dtype)
            mask[:, :, unmasked:half] *= keep_first
            mask[:, :, half:] *= keep_second
            masks.append(mask)
        return masks

    def _full_dim_output(self, outputs: list[Tensor]) -> Tensor:
        """(T, N, max D): channel c taken from the last stack whose width exceeds c."""
        pieces, width = [outputs[-1]], self.encoder_dim[-1]
        for out, dim in zip(reversed(outputs[:-1]), reversed(self.encoder_dim[:-1])):
            if dim > width:
                pieces.append(out[..., width:dim])
                width = dim
        return torch.cat(pieces, dim=-1)

    def forward(self, x: Tensor, x_lens: Tensor, chunk_size: int = 0, left_context: int = -1) -> tuple[Tensor, Tensor]:
        """
        Args:
            x: (N, T, F) float features; frames t >= x_lens[n] are padding (any content).
            x_lens: (N,) int64 valid feature frames, each >= 9 (one encoder frame).
            chunk_size: 0: full context. > 0 (causal models only): attention and convolutions
                limited to chunks of this many encoder frames (40 ms) ...
            left_context: ... plus attention to this many encoder frames before each chunk (-1: all).
        Returns:
            (N, T', D) encoder frames, T' = output_lengths(T), D = output_dim; frames
            t' >= out_lens[n] are padding (not zero). (N,) int64 out_lens = output_lengths(x_lens).
        """
        self._check_features(x, x_lens)
        self._check_chunking(chunk_size, left_context)
        x, lens = self.encoder_embed(x, x_lens)  # (N, T50, D0), (N,)
        if lens.numel() and int(lens.min()) < 1:
            bad = int(torch.argmin(lens))
            raise ValueError(f"utterance {bad} of the batch has {int(x_lens[bad])} feature frames, which gives no "
                             "encoder frame; filter out cuts shorter than 9 frames (90 ms)")
        T50 = x.size(1)
        x = x.permute(1, 0, 2)  # (T50, N, D0): the stacks are time-major
        key_padding_mask = make_pad_mask(lens, T50)  # (N, T50)
        chunk50 = 2 * chunk_size
        attn_mask = None
        if chunk_size > 0:
            attn_mask = chunk_attention_mask(T50, chunk50, 2 * left_context if left_context >= 0 else -1, x.device)
        outputs = []
        masks = self._feature_masks(x.size(1), x.device, x.dtype)
        for stack, dim, mask in zip(self.encoders, self.encoder_dim, masks):
            x = stack(convert_num_channels(x, dim), mask, attn_mask, key_padding_mask, chunk50, lens)
            outputs.append(x)
        x = self.downsample_output(self._full_dim_output(outputs), lens)  # (T', N, D)
        return x.permute(1, 0, 2), (lens + 1) // 2

    # ------------------------------------------------------------------ streaming
    def chunk_window(self, chunk_size: int) -> tuple[int, int]:
        """(window, shift) in feature frames for chunks of ``chunk_size`` encoder frames: a
        window of 4 chunk_size + 13 frames gives chunk_size encoder frames; windows start
        4 chunk_size frames apart (so consecutive windows overlap by 13 frames)."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 encoder frames, got {chunk_size}")
        self._check_chunking(chunk_size, -1)
        return 4 * chunk_size + WINDOW_EXTRA_FRAMES, 4 * chunk_size

    def streaming_forward(self, x: Tensor, x_lens: Tensor, states: list[Tensor]) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Encode one chunk of each stream, continuing from ``states`` (eval mode).

        Args:
            x: (N, W, F) feature window, W = 4 chunk_size + 13 (chunk_window): the window of
                chunk k starts at feature frame 4 chunk_size k.
            x_lens: (N,) int64 valid frames of each window; only a stream's last window may be
                short, and the states returned after it are meaningless.
            states: from init_states() or the previous call (see StreamingStates).
        Returns:
            (N, chunk_size, D) encoder frames, (N,) int64 valid frames per stream (up to
            chunk_size; 0 for a window too short to give one), and the new states.
        """
        if (x.size(1) - WINDOW_EXTRA_FRAMES) % 4 or x.size(1) <= WINDOW_EXTRA_FRAMES:
            raise ValueError(f"a streaming window has 4 * chunk_size + {WINDOW_EXTRA_FRAMES} frames, got {x.size(1)}")
        self._check_features(x, x_lens)
        self._check_chunking((x.size(1) - WINDOW_EXTRA_FRAMES) // 4, -1)
        layer_caches, embed_cache, processed = states[:-2], states[-2], states[-1]
        x, valid, embed_cache = self.encoder_embed.streaming_forward(x, x_lens, embed_cache)  # (N, C50, D0)
        x = x.permute(1, 0, 2)  # (C50, N, D0)
        outputs, new_caches, offset = [], [], 0
        for stack, dim, ds in zip(self.encoders, self.encoder_dim, self.downsampling_factor):
            caches = layer_caches[offset : offset + 6 * stack.num_layers]
            offset += 6 * stack.num_layers
            left = caches[0].size(0)  # the stack's left context (low-rate frames)
            T = x.size(0) // ds
            # cache slot s holds low-rate frame processed/ds - left + s: empty while negative
            empty = torch.arange(left, device=x.device)[None, :] < (left - processed // ds)[:, None]  # (N, left)
            padded = torch.arange(T, device=x.device)[None, :] >= ((valid + ds - 1) // ds)[:, None]  # (N, T)
            key_padding_mask = torch.cat([empty, padded], dim=1)  # (N, left + T)
            x = convert_num_channels(x, dim)
            if ds == 1:
                x, caches = stack.streaming_forward(x, caches, left, key_padding_mask)
            else:
                x, caches = stack.streaming_forward(x, caches, left, key_padding_mask, valid)
            outputs.append(x)
            new_caches += caches
        x = self.downsample_output(self._full_dim_output(outputs), valid)  # (chunk, N, D)
        return x.permute(1, 0, 2), (valid + 1) // 2, new_caches + [embed_cache, processed + valid]
