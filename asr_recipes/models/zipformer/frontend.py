"""The Zipformer's front end: 100 Hz fbank frames -> 50 Hz embeddings (x2 subsampling).

    features (N, T, F) --3 Conv2d + SwooshR--> (N, 128, T50+3, F') --ConvNeXt--> (N, 128, T50, F')
        --flatten, Linear--> (N, T50, D) --BiasNorm--> (N, T50, D)

    T50 = (T - 7) // 2,  F' = ((F - 1) // 2 - 1) // 2  (19 for F = 80)

The three convolutions (kernels 3x3; strides 1, 2, then 2 along mel bins only; no padding
in time) give frame k of their output from feature frames 2k .. 2k+8, so a frame k < T50
never reads a padded feature frame. The ConvNeXt block after them mixes 7 neighbouring frames
(3 before, 3 after). Offline, the frames past an utterance's end are zeros there (as if the
utterance were alone: its convolution pads with zeros), so padding in a batch never reaches
valid frames. In streaming, each window carries the 3 frames the ConvNeXt looks ahead, and a
cache holds the 3 frames it looks back (see Conv2dSubsampling.streaming_forward).

Layout and parameter names follow icefall's zipformer/subsampling.py: ``conv`` is one
nn.Sequential (conv, gradient scale, balancer, activation, ...), so its convolutions are
``conv.0``, ``conv.4`` and ``conv.7``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr_recipes.models.zipformer.constraints import Balancer, ScaleGrad, Whiten
from asr_recipes.models.zipformer.scaling import BiasNorm, SharedDropout, scale_initial_weights
from asr_recipes.models.zipformer.schedule import FloatLike, ScheduledFloat
from asr_recipes.models.zipformer.swoosh import SwooshL, SwooshR

#: Frames the ConvNeXt block looks back and ahead (its 7-frame kernel's half width).
CONVNEXT_CONTEXT = 3


class ConvNeXt(nn.Module):
    """(N, C, T, F) -> (N, C, T, F): x + pointwise(SwooshL(pointwise(depthwise7x7(x)))).

    A ConvNeXt block (Liu et al. 2022) on the time-frequency image; in training, whole
    utterances skip it with a scheduled layer-drop rate.
    """

    def __init__(self, channels: int, hidden_ratio: int = 3, kernel_size: tuple[int, int] = (7, 7),
                 layerdrop_rate: FloatLike | None = None):
        super().__init__()
        self.padding = ((kernel_size[0] - 1) // 2, (kernel_size[1] - 1) // 2)
        hidden = channels * hidden_ratio
        self.layerdrop_rate = ScheduledFloat((0.0, 0.2), (20000.0, 0.015)) if layerdrop_rate is None else layerdrop_rate
        self.depthwise_conv = nn.Conv2d(channels, channels, kernel_size, padding=self.padding, groups=channels)
        self.pointwise_conv1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.hidden_balancer = Balancer(hidden, channel_dim=1, min_positive=0.3, max_positive=1.0,
                                        min_abs=0.75, max_abs=5.0)
        self.activation = SwooshL()
        self.pointwise_conv2 = scale_initial_weights(nn.Conv2d(hidden, channels, kernel_size=1), 0.01)
        self.out_balancer = Balancer(channels, channel_dim=1, min_positive=0.4, max_positive=0.6,
                                     min_abs=1.0, max_abs=6.0)
        self.out_whiten = Whiten(num_groups=1, whitening_limit=5.0, prob=(0.025, 0.25), grad_scale=0.01)

    def _branch(self, x: Tensor) -> Tensor:
        """The residual branch after the depthwise conv: (N, C, T, F) -> (N, C, T, F)."""
        x = self.hidden_balancer(self.pointwise_conv1(x))  # (N, 3C, T, F)
        return self.pointwise_conv2(self.activation(x))  # (N, C, T, F)

    def forward(self, x: Tensor) -> Tensor:
        """Whole utterances: zeros before the first and after the last frame."""
        branch = self._branch(self.depthwise_conv(x))
        rate = float(self.layerdrop_rate) if self.training else 0.0
        if rate > 0.0:
            keep = torch.rand(x.size(0), 1, 1, 1, device=x.device) > rate  # (N, 1, 1, 1): per utterance
            branch = branch * keep.to(branch.dtype)
        x = self.out_balancer(x + branch)
        if self.training and x.requires_grad:
            x = self.out_whiten(x.transpose(1, 3)).transpose(1, 3)  # whitened over channels (last axis)
        return x

    def streaming_forward(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        """One chunk: x (N, C, T + 3, F) is the chunk's T frames and the 3 after it;
        cache (N, C, 3, F) the 3 frames before it (zeros at the start). Returns (N, C, T, F)
        and the new cache: the chunk's last 3 frames."""
        back, ahead = self.padding[0], self.padding[0]
        T = x.size(2) - ahead
        padded = torch.cat([cache, x], dim=2)  # (N, C, back + T + ahead, F)
        new_cache = padded[:, :, T : T + back]
        conv = self.depthwise_conv
        y = nn.functional.conv2d(padded, conv.weight, conv.bias, padding=(0, self.padding[1]), groups=conv.groups)
        return x[:, :, :T] + self._branch(y), new_cache


class Conv2dSubsampling(nn.Module):
    """(N, T, F) features -> (N, (T - 7) // 2, out_channels) embeddings at 50 Hz.

    Args:
        in_channels: F, mel bins (>= 7).
        out_channels: D, the first encoder stack's width.
        layer1_channels, layer2_channels, layer3_channels: channels of the three convolutions.
        dropout: rate of the output dropout (one draw per utterance and channel).
    """

    def __init__(self, in_channels: int, out_channels: int, layer1_channels: int = 8, layer2_channels: int = 32,
                 layer3_channels: int = 128, dropout: FloatLike = 0.1):
        super().__init__()
        if in_channels < 7:
            raise ValueError(f"the Zipformer front end needs at least 7 mel bins, got {in_channels}")
        self.conv = nn.Sequential(
            nn.Conv2d(1, layer1_channels, kernel_size=3, padding=(0, 1)),  # (time, freq) padding
            ScaleGrad(0.2),  # keeps this conv's weight gradient small enough for fp16
            Balancer(layer1_channels, channel_dim=1, max_abs=1.0),
            SwooshR(),
            nn.Conv2d(layer1_channels, layer2_channels, kernel_size=3, stride=2),
            Balancer(layer2_channels, channel_dim=1, max_abs=4.0),
            SwooshR(),
            nn.Conv2d(layer2_channels, layer3_channels, kernel_size=3, stride=(1, 2)),
            Balancer(layer3_channels, channel_dim=1, max_abs=4.0),
            SwooshR(),
        )
        self.convnext = ConvNeXt(layer3_channels, kernel_size=(7, 7))
        self.out_width = ((in_channels - 1) // 2 - 1) // 2
        self.layer3_channels = layer3_channels
        self.out = nn.Linear(self.out_width * layer3_channels, out_channels)
        self.out_whiten = Whiten(num_groups=1,
                                 whitening_limit=ScheduledFloat((0.0, 4.0), (20000.0, 8.0), default=4.0),
                                 prob=(0.025, 0.25), grad_scale=0.02)
        self.out_norm = BiasNorm(out_channels)
        self.dropout = SharedDropout(dropout, shared_dim=1)

    def _convolve(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """(N, T, F) -> conv output (N, C3, (T-7)//2, F') with frames past each utterance's
        valid frames set to zero, and those valid counts (N,) (clamped at 0)."""
        if x.size(1) < 9:
            raise ValueError(f"the Zipformer front end needs at least 9 feature frames (one output frame), got a "
                             f"batch of T={x.size(1)}; filter out cuts shorter than 9 frames (90 ms)")
        y = self.conv(x.unsqueeze(1))  # (N, C3, T', F'): time and mel bins as the image axes
        valid = ((x_lens - 7) // 2).clamp(min=0)  # (N,)
        padded = torch.arange(y.size(2), device=y.device)[None, :] >= valid[:, None]  # (N, T')
        return y.masked_fill(padded[:, None, :, None], 0.0), valid

    def _project(self, y: Tensor) -> Tensor:
        """(N, C3, T, F') -> (N, T, D)."""
        n, c, t, f = y.shape
        return self.out(y.transpose(1, 2).reshape(n, t, c * f))  # (N, T, C3 * F') -> (N, T, D)

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """
        Args:
            x: (N, T, F) features; frames t >= x_lens[n] are padding (any content).
            x_lens: (N,) int64 valid frames.
        Returns:
            (N, T50, D) embeddings, T50 = (T - 7) // 2, and (N,) int64 lengths (x_lens - 7) // 2
            (not clamped: a too-short utterance gets a length <= 0, which the caller rejects).
        """
        y, _ = self._convolve(x, x_lens)
        y = self.convnext(y)  # (N, C3, T50, F')
        out = self.out_norm(self.out_whiten(self._project(y)))  # (N, T50, D)
        return self.dropout(out), (x_lens - 7) // 2

    def streaming_forward(self, x: Tensor, x_lens: Tensor, cache: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One window (eval mode).

        Args:
            x: (N, W, F) a window of features; its conv output has T + 3 frames, the last 3 of
                which are look-ahead for the ConvNeXt (the next window starts 2T frames later).
            x_lens: (N,) valid frames of each window (a stream's last window may be short).
            cache: (N, C3, 3, F') the ConvNeXt's look-back from the previous window.
        Returns:
            (N, T, D) embeddings, (N,) int64 valid frames among them (T unless the window
            was short), and the new cache.
        """
        y, valid = self._convolve(x, x_lens)  # (N, C3, T+3, F')
        y, cache = self.convnext.streaming_forward(y, cache)  # (N, C3, T, F')
        T = y.size(2)
        return self.out_norm(self._project(y)), valid.clamp(max=T), cache

    def init_cache(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype = torch.float32) -> Tensor:
        """(N, C3, 3, F') zeros: the ConvNeXt's look-back before a stream's first window."""
        return torch.zeros(batch_size, self.layer3_channels, CONVNEXT_CONTEXT, self.out_width, device=device,
                           dtype=dtype)
