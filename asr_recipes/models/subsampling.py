"""Conv2d front end: 10 ms fbank frames -> 40 ms encoder frames (x4 subsampling).

Two 3x3 convolutions with stride 2 and no padding, each followed by ReLU, then a
linear layer that flattens (channels x remaining mel bins) into d_model. Without
padding every output frame sees only input frames it fully covers, so an output
frame that is valid (t' < T') never reads a padded input frame:

    T' = ((T - 1) // 2 - 1) // 2 = asr_recipes.constants.frames_after_subsampling(T)

Output frame t' covers input frames 4t' .. 4t'+6 (receptive field 7, hop 4).
"""

from torch import Tensor, nn

from asr_recipes.constants import frames_after_subsampling


class Conv2dSubsampling(nn.Module):
    """(N, T, F) features -> (N, T', d_model), T' = frames_after_subsampling(T).

    Args:
        feature_dim: F, mel bins per input frame (80).
        d_model: output dimension.
        channels: conv channels of both layers. Fewer channels make the front end
            cheaper; the linear layer has channels * F'' * d_model weights with
            F'' = frames_after_subsampling(F) (19 for F = 80).
    """

    def __init__(self, feature_dim: int, d_model: int, channels: int):
        super().__init__()
        freq_out = frames_after_subsampling(feature_dim)  # the same formula runs along mel bins
        if freq_out < 1:
            raise ValueError(f"feature_dim={feature_dim} is too small for two stride-2 3x3 convs (need >= 7)")
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, stride=2),
            nn.ReLU(),
        )
        self.out = nn.Linear(channels * freq_out, d_model)

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """
        Args:
            x: (N, T, F) float features, frames t >= x_lens[n] are padding.
            x_lens: (N,) int64 valid input frames.
        Returns:
            (N, T', d_model) and (N,) int64 output lengths frames_after_subsampling(x_lens).
            Lengths are not clamped: a too-short input gives a length <= 0, which the
            caller must reject (it knows which utterance it is).
        """
        if x.size(1) < 7:
            raise ValueError(
                f"Conv2dSubsampling needs at least 7 input frames (70 ms), got a batch of T={x.size(1)}"
            )
        x = x.unsqueeze(1)  # (N, 1, T, F): time and mel bins become the conv's image axes
        x = self.conv(x)  # (N, C, T', F'')
        n, c, t, f = x.shape
        x = x.transpose(1, 2).reshape(n, t, c * f)  # (N, T', C * F'')
        x = self.out(x)  # (N, T', d_model)
        return x, frames_after_subsampling(x_lens)
