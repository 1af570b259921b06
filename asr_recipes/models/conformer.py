"""Conformer encoder (Gulati et al. 2020): fbank frames -> 40 ms encoder frames.

    features (N, T, F) --Conv2dSubsampling--> (N, T', D) --RelPositionalEncoding-->
    num_layers x ConformerLayer --> (N, T', D),  T' = frames_after_subsampling(T)

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
"""

import torch
from torch import Tensor, nn

from asr_recipes.models.attention import RelPositionalEncoding, RelPositionMultiheadAttention
from asr_recipes.models.subsampling import Conv2dSubsampling


def make_pad_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(N,) lengths -> (N, max_len) bool, True at padded positions t >= lengths[n]."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


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
    Swish, pointwise conv. The depthwise conv (odd kernel, same padding) is the only
    place where neighbouring frames mix, so padded frames are zeroed right before it.

    norm: "batch" (masked BatchNorm, as in the Conformer paper) or "layer".
    """

    def __init__(self, d_model: int, kernel_size: int, norm: str):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"conv kernel_size must be odd to keep frames centred, got {kernel_size}")
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, kernel_size=1)
        self.depthwise = nn.Conv1d(
            d_model, d_model, kernel_size, padding=(kernel_size - 1) // 2, groups=d_model
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
        x = x.transpose(1, 2)  # (N, D, T): Conv1d wants channels first
        x = self.pointwise_in(x)  # (N, 2D, T)
        x = nn.functional.glu(x, dim=1)  # (N, D, T)
        x = x.masked_fill(pad_mask[:, None, :], 0.0)  # padded frames must not reach valid ones
        x = self.depthwise(x)  # (N, D, T)
        x = self.activation(self.norm(x, pad_mask))  # (N, D, T)
        x = self.pointwise_out(x)  # (N, D, T)
        return x.transpose(1, 2)  # (N, T, D)


class ConformerLayer(nn.Module):
    """forward(x (N, T, D), pos_emb (1, 2T-1, D), pad_mask (N, T)) -> (N, T, D)."""

    def __init__(self, d_model: int, num_heads: int, ff_dim: int, kernel_size: int, dropout: float, conv_norm: str):
        super().__init__()
        self.ff_macaron = FeedForward(d_model, ff_dim, dropout)
        self.self_attn = RelPositionMultiheadAttention(d_model, num_heads, dropout)
        self.conv = ConvolutionModule(d_model, kernel_size, conv_norm)
        self.ff = FeedForward(d_model, ff_dim, dropout)
        self.norm_ff_macaron = nn.LayerNorm(d_model)
        self.norm_attn = nn.LayerNorm(d_model)
        self.norm_conv = nn.LayerNorm(d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.norm_final = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, pos_emb: Tensor, pad_mask: Tensor) -> Tensor:
        # half-step feed-forwards: the two FFNs together make one full step (macaron net)
        x = x + 0.5 * self.dropout(self.ff_macaron(self.norm_ff_macaron(x)))
        x = x + self.dropout(self.self_attn(self.norm_attn(x), pos_emb, pad_mask))
        x = x + self.dropout(self.conv(self.norm_conv(x), pad_mask))
        x = x + 0.5 * self.dropout(self.ff(self.norm_ff(x)))
        return self.norm_final(x)  # (N, T, D)


class Conformer(nn.Module):
    """Conformer encoder.

    Args:
        feature_dim: F, input mel bins.
        d_model, num_heads, ff_dim, num_layers, kernel_size, dropout: the usual sizes.
        subsampling_channels: conv channels of the x4 front end (see Conv2dSubsampling).
        conv_norm: "batch" or "layer" normalisation inside the convolution module.

    Attribute output_dim = d_model (what the decoder/joiner projections read).
    """

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
    ):
        super().__init__()
        self.feature_dim = feature_dim
        self.output_dim = d_model
        self.subsampling = Conv2dSubsampling(feature_dim, d_model, subsampling_channels)
        self.pos_enc = RelPositionalEncoding(d_model, dropout)
        self.layers = nn.ModuleList(
            ConformerLayer(d_model, num_heads, ff_dim, kernel_size, dropout, conv_norm) for _ in range(num_layers)
        )

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """
        Args:
            x: (N, T, F) float features; frames t >= x_lens[n] are padding (any content).
            x_lens: (N,) int64 valid feature frames, each giving at least one encoder frame
                (x_lens >= 7); checked here because attention over zero frames is undefined.
        Returns:
            (N, T', D) encoder frames, T' = frames_after_subsampling(T); frames
            t' >= out_lens[n] are padding (not zero: they hold whatever the layers make of them).
            (N,) int64 out_lens = frames_after_subsampling(x_lens).
        """
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
        for layer in self.layers:
            x = layer(x, pos_emb, pad_mask)  # (N, T', D)
        return x, lens
