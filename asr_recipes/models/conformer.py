"""Conformer encoder (Gulati et al. 2020): fbank frames -> 40 ms encoder frames.

    features (N, T, F) --Conv2dSubsampling--> (N, T', D) --RelPositionalEncoding-->
    num_layers x ConformerLayer --> (N, T', D),  T' = output_lengths(T) = ((T - 1) // 2 - 1) // 2

Each layer is a "macaron" sandwich with pre-LayerNorm residual branches:

    x = x + 1/2 FeedForward(x)
    x = x + RelPositionMultiheadAttention(x)
    x = x + ConvolutionModule(x)
    x = x + 1/2 FeedForward(x)
    x = LayerNorm(x)

Padding never leaks into valid frames: attention masks padded keys, the convolution
module zeroes padded frames before its depthwise conv, and batch norm takes its
statistics from valid frames only. So the output at t' < encoder_lens[n] never depends
on padded input frames. In eval mode it depends on utterance n alone; in training mode
batch-norm statistics mix the valid frames of the whole batch, as batch norm always does.

Streaming (``causal=True``). The depthwise convolutions look only left (kernel-1 past
frames, no future), and attention is limited by a chunk mask: encoder frames are grouped
into chunks of ``chunk_size``; a frame sees every frame of its own chunk and the
``left_context`` frames before the chunk's start (-1: all of them). Nothing else looks
ahead, except the subsampling front end (3 feature frames, SUBSAMPLING_LOOKAHEAD). Two
ways to run such a model, with equal outputs (tests/models/test_streaming_encoder.py):

* ``forward(x, x_lens, chunk_size, left_context)``: the whole utterance at once with the
  chunk mask (simulated streaming, and dynamic chunk training with a chunk size per batch);
* ``streaming_forward(window, window_lens, states)``: one chunk at a time, carrying
  ``states`` between calls (real streaming; the ONNX streaming export wraps this).

The Conformer implements the encoder contract of models/encoder.py.

A non-causal model (``causal=False``, the default) is the offline Conformer: symmetric
convolutions, full attention, and ``forward`` computes exactly what it always did.
"""

import torch
from torch import Tensor, nn

from asr_recipes.constants import SUBSAMPLING_FACTOR, SUBSAMPLING_LOOKAHEAD, frames_after_subsampling
from asr_recipes.models.attention import RelPositionalEncoding, RelPositionMultiheadAttention
from asr_recipes.models.encoder import Encoder
from asr_recipes.models.subsampling import Conv2dSubsampling


def make_pad_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(N,) lengths -> (N, max_len) bool, True at padded positions t >= lengths[n]."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def chunk_attention_mask(T: int, chunk_size: int, left_context: int, device: torch.device) -> Tensor:
    """(T, T) bool, True where query frame i may NOT see key frame j.

    Frame i belongs to chunk i // chunk_size, starting at s = (i // chunk_size) * chunk_size;
    it sees keys s - left_context <= j < s + chunk_size (left_context -1: all j < s + chunk_size).
    A streaming encoder that caches the last left_context frames before each chunk sees
    exactly these keys.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 encoder frames, got {chunk_size}")
    start = torch.arange(T, device=device) // chunk_size * chunk_size  # (T,) chunk start of each query
    j = torch.arange(T, device=device)[None, :]  # (1, T)
    hidden = j >= (start + chunk_size)[:, None]  # (T, T): keys of later chunks
    if left_context >= 0:
        hidden |= j < (start - left_context)[:, None]  # keys beyond the left context
    return hidden


class FeedForward(nn.Module):
    """(N, T, D) -> (N, T, D): Linear(D, ff) -> Swish -> Dropout -> Linear(ff, D)."""

    def __init__(self, d_model: int, ff_dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.SiLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over channels whose training statistics come from valid frames only.

    Plain BatchNorm1d on (N, C, T) would average over padded frames too, so the amount
    of padding in a batch would change every valid output. forward(x (N, C, T),
    pad_mask (N, T)) -> (N, C, T) with padded frames set to 0.
    """

    def forward(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        N, C, T = x.shape
        frames = x.transpose(1, 2).reshape(N * T, C)  # (N*T, C): one row per frame
        valid = (~pad_mask).reshape(N * T).nonzero().squeeze(1)  # (M,) indices of valid frames
        normed = super().forward(frames.index_select(0, valid))  # (M, C), a (batch, features) input
        out = normed.new_zeros(N * T, C).index_copy(0, valid, normed)  # (N*T, C), dtype as autocast chose
        return out.view(N, T, C).transpose(1, 2)  # (N, C, T)


class MaskedLayerNorm1d(nn.LayerNorm):
    """LayerNorm over channels for (N, C, T) input; per-frame, so padding cannot leak."""

    def forward(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)  # (N, C, T)


class ConvolutionModule(nn.Module):
    """(N, T, D) -> (N, T, D): pointwise conv + GLU, depthwise conv over time, norm,
    Swish, pointwise conv. The depthwise conv is the only place where neighbouring frames
    mix, so padded frames are zeroed right before it.

    causal=False: odd kernel, centred ("same" padding): frame t sees t-(k-1)/2 .. t+(k-1)/2.
    causal=True: frame t sees t-k+1 .. t; the k-1 frames before the first are zeros, or in
        streaming the cached last k-1 frames of the previous chunk (streaming_forward).
    norm: "batch" (masked BatchNorm, as in the Conformer paper) or "layer".
    """

    def __init__(self, d_model: int, kernel_size: int, norm: str, causal: bool = False):
        super().__init__()
        if kernel_size % 2 == 0 and not causal:
            raise ValueError(f"conv kernel_size must be odd to keep frames centred, got {kernel_size}")
        self.causal = causal
        self.kernel_size = kernel_size
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, kernel_size=1)
        # causal: no padding inside the conv; the left context is concatenated in front instead
        self.depthwise = nn.Conv1d(
            d_model, d_model, kernel_size, padding=0 if causal else (kernel_size - 1) // 2, groups=d_model
        )
        if norm == "batch":
            self.norm = MaskedBatchNorm1d(d_model)
        elif norm == "layer":
            self.norm = MaskedLayerNorm1d(d_model)
        else:
            raise ValueError(f"conv_norm must be 'batch' or 'layer', got {norm!r}")
        self.activation = nn.SiLU()
        self.pointwise_out = nn.Conv1d(d_model, d_model, kernel_size=1)

    def forward(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        if self.causal:
            zeros = x.new_zeros(x.size(0), x.size(2), self.kernel_size - 1)  # (N, D, k-1): silence before frame 0
            return self.streaming_forward(x, pad_mask, zeros)[0]
        x = self._gated_input(x, pad_mask)  # (N, D, T)
        x = self.depthwise(x)  # (N, D, T)
        return self._output(x, pad_mask)

    def streaming_forward(self, x: Tensor, pad_mask: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        """Causal conv of one chunk after the frames in ``cache``.

        Args:
            x: (N, T, D) chunk; pad_mask (N, T) True at padded frames.
            cache: (N, D, k-1) depthwise-conv inputs of the k-1 frames before the chunk.
        Returns:
            (N, T, D) output and the new cache (N, D, k-1): the last k-1 inputs of
            cache + chunk (meaningful only when the chunk has no padding, i.e. the stream goes on).
        """
        x = self._gated_input(x, pad_mask)  # (N, D, T)
        x = torch.cat([cache, x], dim=2)  # (N, D, k-1+T)
        new_cache = x[:, :, x.size(2) - (self.kernel_size - 1) :]  # (N, D, k-1)
        x = self.depthwise(x)  # (N, D, T)
        return self._output(x, pad_mask), new_cache

    def _gated_input(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        """(N, T, D) -> (N, D, T) depthwise-conv input, padded frames zeroed."""
        x = x.transpose(1, 2)  # (N, D, T): Conv1d wants channels first
        x = self.pointwise_in(x)  # (N, 2D, T)
        x = nn.functional.glu(x, dim=1)  # (N, D, T)
        return x.masked_fill(pad_mask[:, None, :], 0.0)  # padded frames must not reach valid ones

    def _output(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        """(N, D, T) depthwise-conv output -> (N, T, D)."""
        x = self.activation(self.norm(x, pad_mask))  # (N, D, T)
        x = self.pointwise_out(x)  # (N, D, T)
        return x.transpose(1, 2)  # (N, T, D)


class ConformerLayer(nn.Module):
    """forward(x (N, T, D), pos_emb (1, 2T-1, D), pad_mask (N, T), attn_mask (N, T, T) or None)
    -> (N, T, D): attention hides padded keys, or where given what attn_mask hides (True);
    streaming_forward for one chunk with caches (see there)."""

    def __init__(self, d_model: int, num_heads: int, ff_dim: int, kernel_size: int, dropout: float, conv_norm: str,
                 causal: bool = False):
        super().__init__()
        self.ff_macaron = FeedForward(d_model, ff_dim, dropout)
        self.self_attn = RelPositionMultiheadAttention(d_model, num_heads, dropout)
        self.conv = ConvolutionModule(d_model, kernel_size, conv_norm, causal)
        self.ff = FeedForward(d_model, ff_dim, dropout)
        self.norm_ff_macaron = nn.LayerNorm(d_model)
        self.norm_attn = nn.LayerNorm(d_model)
        self.norm_conv = nn.LayerNorm(d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.norm_final = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, pos_emb: Tensor, pad_mask: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        # half-step feed-forwards: the two FFNs together make one full step (macaron net)
        x = x + 0.5 * self.dropout(self.ff_macaron(self.norm_ff_macaron(x)))
        hidden = pad_mask[:, None, :] if attn_mask is None else attn_mask  # (N, 1 or T, T)
        x = x + self.dropout(self.self_attn(self.norm_attn(x), pos_emb, hidden))
        x = x + self.dropout(self.conv(self.norm_conv(x), pad_mask))
        x = x + 0.5 * self.dropout(self.ff(self.norm_ff(x)))
        return self.norm_final(x)  # (N, T, D)

    def streaming_forward(self, x: Tensor, pos_emb: Tensor, key_mask: Tensor, pad_mask: Tensor,
                          attn_cache: Tensor, conv_cache: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One chunk of a causal layer (eval mode).

        Args:
            x: (N, T, D) the chunk; pad_mask (N, T) True at its padded frames.
            pos_emb: (1, L+2T-1, D) for T queries against L+T keys.
            key_mask: (N, 1, L+T) True at keys to ignore: cache slots not filled yet, padding.
            attn_cache: (N, L, D) attention inputs (after norm_attn) of the L frames before
                the chunk; conv_cache: (N, D, k-1) depthwise-conv inputs (see ConvolutionModule).
        Returns:
            (N, T, D) output, new attn_cache (N, L, D), new conv_cache (N, D, k-1).
        """
        x = x + 0.5 * self.ff_macaron(self.norm_ff_macaron(x))
        a = self.norm_attn(x)  # (N, T, D)
        keys = torch.cat([attn_cache, a], dim=1)  # (N, L+T, D): cached left context, then the chunk
        x = x + self.self_attn(a, pos_emb, key_mask, keys=keys)
        new_attn_cache = keys[:, keys.size(1) - attn_cache.size(1) :]  # (N, L, D): the newest L inputs
        conv, new_conv_cache = self.conv.streaming_forward(self.norm_conv(x), pad_mask, conv_cache)
        x = x + conv
        x = x + 0.5 * self.ff(self.norm_ff(x))
        return self.norm_final(x), new_attn_cache, new_conv_cache


class Conformer(Encoder):
    """Conformer encoder (the contract of models/encoder.py).

    Args:
        feature_dim: F, input mel bins.
        d_model, num_heads, ff_dim, num_layers, kernel_size, dropout: the usual sizes.
        subsampling_channels: conv channels of the x4 front end (see Conv2dSubsampling).
        conv_norm: "batch" or "layer" normalisation inside the convolution module.
        causal: streaming model: causal convolutions, and forward() accepts a chunk mask
            (see the module docstring).

    Attributes feature_dim = F, output_dim = d_model (what the decoder/joiner projections
    read), causal, lookahead_frames = 3 (the front end's, SUBSAMPLING_LOOKAHEAD).
    """

    lookahead_frames = SUBSAMPLING_LOOKAHEAD

    def __init__(
        self,
        feature_dim: int,
        d_model: int,
        num_heads: int,
        ff_dim: int,
        num_layers: int,
        kernel_size: int,
        dropout: float = 0.1,
        subsampling_channels: int = 128,
        conv_norm: str = "batch",
        causal: bool = False,
    ):
        super().__init__()
        self.feature_dim = feature_dim
        self.output_dim = d_model
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.causal = causal
        self.subsampling = Conv2dSubsampling(feature_dim, d_model, subsampling_channels)
        self.pos_enc = RelPositionalEncoding(d_model, dropout)
        self.layers = nn.ModuleList(
            ConformerLayer(d_model, num_heads, ff_dim, kernel_size, dropout, conv_norm, causal)
            for _ in range(num_layers)
        )

    def forward(self, x: Tensor, x_lens: Tensor, chunk_size: int = 0, left_context: int = -1) -> tuple[Tensor, Tensor]:
        """
        Args:
            x: (N, T, F) float features; frames t >= x_lens[n] are padding (any content).
            x_lens: (N,) int64 valid feature frames, each giving at least one encoder frame
                (x_lens >= 7); checked here because attention over zero frames is undefined.
            chunk_size: 0: full context. > 0 (causal models only): simulated streaming,
                attention limited to chunks of this many encoder frames ...
            left_context: ... plus this many encoder frames before each chunk (-1: all).
        Returns:
            (N, T', D) encoder frames, T' = output_lengths(T); frames
            t' >= out_lens[n] are padding (not zero: they hold whatever the layers make of them).
            (N,) int64 out_lens = output_lengths(x_lens).
        """
        self._check_features(x, x_lens)
        if chunk_size > 0 and not self.causal:
            raise ValueError(f"chunk_size={chunk_size} needs a streaming model: this encoder was built with "
                             "causal=false (its convolutions look ahead); train with model.causal=true")
        x, lens = self.subsampling(x, x_lens)  # (N, T', D), (N,)
        if lens.numel() and int(lens.min()) < 1:
            bad = int(torch.argmin(lens))
            raise ValueError(
                f"utterance {bad} of the batch has {int(x_lens[bad])} feature frames, which gives "
                f"{int(lens[bad])} encoder frames; filter out cuts shorter than 7 frames (70 ms)"
            )
        pad_mask = make_pad_mask(lens, x.size(1))  # (N, T')
        x = x.masked_fill(pad_mask[..., None], 0.0)  # deterministic padding: nothing downstream reads it
        x, pos_emb = self.pos_enc(x)  # (N, T', D), (1, 2T'-1, D)
        attn_mask = None
        if chunk_size > 0:
            T = x.size(1)
            attn_mask = chunk_attention_mask(T, chunk_size, left_context, x.device)[None] | pad_mask[:, None, :]
            # A padded query whose chunk is all padding would see no key at all, and its NaN
            # output would reach valid frames through 0 * NaN in the next layer's values: let
            # every frame see itself (valid frames always do already).
            attn_mask &= ~torch.eye(T, dtype=torch.bool, device=x.device)  # (N, T', T')
        for layer in self.layers:
            x = layer(x, pos_emb, pad_mask, attn_mask)  # (N, T', D)
        return x, lens

    def output_lengths(self, num_frames):
        """T' = ((T - 1) // 2 - 1) // 2 encoder frames from T feature frames (Conv2dSubsampling);
        an int or an integer tensor."""
        return frames_after_subsampling(num_frames)

    def _check_features(self, x: Tensor, x_lens: Tensor) -> None:
        if x.ndim != 3 or x.size(2) != self.feature_dim:
            raise ValueError(
                f"features must be (N, T, {self.feature_dim}), got {tuple(x.shape)}: the model was built "
                f"for feature_dim={self.feature_dim}; extract features with the same number of mel bins"
            )
        if x_lens.shape != (x.size(0),) or (x_lens.numel() and int(x_lens.max()) > x.size(1)):
            raise ValueError(
                f"feature lengths must be (N,) = ({x.size(0)},) with values <= T = {x.size(1)}, "
                f"got shape {tuple(x_lens.shape)} and max {int(x_lens.max()) if x_lens.numel() else None}"
            )

    # ------------------------------------------------------------------ streaming
    def chunk_window(self, chunk_size: int) -> tuple[int, int]:
        """(window, shift) in feature frames for chunks of ``chunk_size`` encoder frames.

        A window of chunk_size * 4 + 3 feature frames gives exactly chunk_size encoder frames
        (the front end reads 3 frames past its last 4-frame hop); consecutive windows start
        chunk_size * 4 frames apart, so they overlap by those 3 frames.
        """
        if not self.causal:
            raise self._not_streaming()
        return chunk_size * SUBSAMPLING_FACTOR + SUBSAMPLING_LOOKAHEAD, chunk_size * SUBSAMPLING_FACTOR

    def init_states(self, batch_size: int, left_context: int, device: torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> list[Tensor]:
        """Streaming states before the first chunk of ``batch_size`` streams:

            attn_cache (num_layers, left_context, N, D): each layer's attention input
                (after norm_attn) for the last left_context encoder frames, oldest first;
            conv_cache (num_layers, kernel_size - 1, N, D): each layer's depthwise-conv input
                for the last kernel_size - 1 frames;
            processed (N,) int64: encoder frames of the stream processed so far (cache slots
                older than that are empty and masked).

        The batch axis is 2 in the caches (0 in ``processed``), so streams are stacked and
        split with torch.cat / torch.unbind on that axis (stack_states / unstack_states).
        """
        if not self.causal:
            raise ValueError("streaming needs a causal model (model.causal=true); this one looks ahead")
        if left_context < 0:
            raise ValueError(f"streaming needs a finite left_context (encoder frames), got {left_context}")
        D = self.output_dim
        return [
            torch.zeros(self.num_layers, left_context, batch_size, D, device=device, dtype=dtype),
            torch.zeros(self.num_layers, self.kernel_size - 1, batch_size, D, device=device, dtype=dtype),
            torch.zeros(batch_size, dtype=torch.int64, device=device),
        ]

    def streaming_forward(self, x: Tensor, x_lens: Tensor, states: list[Tensor]) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Encode one chunk of each stream, continuing from ``states`` (eval mode).

        Args:
            x: (N, W, F) feature window, W = chunk_size * 4 + 3 (chunk_window): the
                window of chunk k starts at feature frame 4 * chunk_size * k, so consecutive
                windows overlap by 3 frames.
            x_lens: (N,) int64 valid frames of each window; only a stream's last window may
                be short (W' >= 7 frames), and the states returned after it are meaningless.
            states: from init_states() or the previous call.
        Returns:
            (N, chunk_size, D) encoder frames, (N,) int64 valid frames per stream
            (output_lengths(x_lens), at most chunk_size), and the new states.
        """
        attn_cache, conv_cache, processed = states
        L = attn_cache.size(1)
        x, lens = self.subsampling(x, x_lens)  # (N, C, D), (N,)
        lens = lens.clamp(min=0)
        C = x.size(1)
        pad_mask = make_pad_mask(lens, C)  # (N, C)
        x = x.masked_fill(pad_mask[..., None], 0.0)
        x, pos_emb = self.pos_enc(x, left_context=L)  # (N, C, D), (1, L+2C-1, D)
        # cache slot s holds frame processed - L + s: empty (masked) while that is negative
        empty = torch.arange(L, device=x.device)[None, :] < (L - processed)[:, None]  # (N, L)
        key_mask = torch.cat([empty, pad_mask], dim=1)[:, None, :]  # (N, 1, L+C)
        new_attn, new_conv = [], []
        for i, layer in enumerate(self.layers):
            x, a, c = layer.streaming_forward(
                x, pos_emb, key_mask, pad_mask, attn_cache[i].transpose(0, 1), conv_cache[i].permute(1, 2, 0)
            )  # (N, C, D), (N, L, D), (N, D, k-1)
            new_attn.append(a.transpose(0, 1))  # (L, N, D)
            new_conv.append(c.permute(2, 0, 1))  # (k-1, N, D)
        return x, lens, [torch.stack(new_attn), torch.stack(new_conv), processed + lens]


    def stack_states(self, states: list[list[Tensor]]) -> list[Tensor]:
        """Per-stream states (each from init_states(1, ...) or unstack_states) -> one batch."""
        return [torch.cat([s[0] for s in states], dim=2), torch.cat([s[1] for s in states], dim=2),
                torch.cat([s[2] for s in states], dim=0)]

    def unstack_states(self, states: list[Tensor]) -> list[list[Tensor]]:
        """A batch's states -> one list per stream, each with batch size 1."""
        attn, conv, processed = states
        return [[attn[:, :, n : n + 1], conv[:, :, n : n + 1], processed[n : n + 1]]
                for n in range(processed.size(0))]
