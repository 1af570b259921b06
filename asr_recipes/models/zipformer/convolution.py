"""The Zipformer's convolution and feed-forward modules (time-major tensors (T, N, C)).

Streaming models replace the depthwise convolution by ChunkCausalDepthwiseConv1d: a causal
convolution over the past plus a symmetric one that sees only the frames of the current chunk.
Chunks are the attention chunks, so a chunk-by-chunk run with caches computes what the whole
utterance computes with the same chunking.

Two choices differ from icefall's ChunkCausalDepthwiseConv1d where icefall's own streaming
and whole-utterance runs disagree: without chunking (full context) the chunk-end corrections
sit at each utterance's own end (icefall: at the padded batch's end); and a sequence shorter
than one chunk is a partial chunk padded with zeros, as in streaming (icefall's whole-utterance
run shrinks the chunk to the sequence). For an utterance alone and at least a chunk long, both
compute the same.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr_recipes.models.zipformer.constraints import Balancer, Whiten
from asr_recipes.models.zipformer.scaling import ActivationDropoutAndLinear
from asr_recipes.models.zipformer.schedule import FloatLike, ScheduledFloat, whitening_limit


class ChunkCausalDepthwiseConv1d(nn.Module):
    """(N, C, T) -> (N, C, T): a depthwise convolution that sees no frame after the current chunk.

    out[t] = causal_conv(x[t - K//2 .. t]) + scale(t) * chunkwise_conv(x[t - K//2 .. t + K//2] within t's chunk)

    for kernel size K (odd): the causal part has (K+1)/2 taps over the past and the current
    frame; the chunk-wise part has K taps but treats frames outside the chunk as zeros. Its
    output is scaled by 1 + left(t) + right(t), learned corrections for the frames within K of
    the chunk's start and end (``chunkwise_conv_scale`` (2, C, K): row 0 for the start, row 1
    for the end), where a chunk edge cuts the kernel.
    """

    def __init__(self, channels: int, kernel_size: int, initial_scale: float = 1.0, bias: bool = True):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        self.causal_conv = nn.Conv1d(channels, channels, (kernel_size + 1) // 2, groups=channels)
        self.chunkwise_conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels,
                                        bias=bias)
        self.chunkwise_conv_scale = nn.Parameter(torch.zeros(2, channels, kernel_size))
        with torch.no_grad():
            self.causal_conv.weight.mul_(initial_scale)
            self.chunkwise_conv.weight.mul_(initial_scale)
            if bias:
                self.causal_conv.bias.uniform_(-0.1 * initial_scale, 0.1 * initial_scale)

    def _edge_scale(self, positions: Tensor, chunk_lens: Tensor) -> Tensor:
        """Scale of the chunk-wise output at in-chunk positions t (...,) for chunks of lengths
        chunk_lens (broadcastable): (C, ...) = 1 + left[t] + right[K - (len - t)], each
        correction present only within K frames of its edge."""
        K = self.kernel_size
        left, right = self.chunkwise_conv_scale  # (C, K) each
        from_end = chunk_lens - positions  # 1 at the last frame
        at_start = positions < K
        at_end = (from_end <= K) & (from_end >= 1)
        scale = 1.0 + left[:, positions.clamp(max=K - 1)] * at_start
        return scale + right[:, (K - from_end).clamp(0, K - 1)] * at_end

    def forward(self, x: Tensor, chunk_size: int, lengths: Tensor | None = None) -> Tensor:
        """
        Args:
            x: (N, C, T), padded frames already zero.
            chunk_size: frames per chunk (> 0); <= 0: no chunking, each utterance one chunk of
                its own length (full context, not causal).
            lengths: (N,) valid frames, needed for chunk_size <= 0 (None: all T valid).
        """
        N, C, T = x.shape
        back = self.kernel_size // 2
        causal = self.causal_conv(nn.functional.pad(x, (back, 0)))  # (N, C, T)
        if chunk_size <= 0:
            chunk_lens = (torch.full((N,), T, device=x.device) if lengths is None else lengths)[:, None]  # (N, 1)
            t = torch.arange(T, device=x.device)[None, :]  # (1, T)
            scale = self._edge_scale(t, chunk_lens).permute(1, 0, 2)  # (N, C, T)
            return causal + self.chunkwise_conv(x) * scale.to(x.dtype)
        num_chunks = -(-T // chunk_size)
        padded = nn.functional.pad(x, (0, num_chunks * chunk_size - T))  # (N, C, nc * c): whole chunks
        chunks = padded.reshape(N, C, num_chunks, chunk_size).permute(0, 2, 1, 3)  # (N, nc, C, c)
        chunks = self.chunkwise_conv(chunks.reshape(N * num_chunks, C, chunk_size))  # (N nc, C, c)
        t = torch.arange(chunk_size, device=x.device)
        chunks = chunks * self._edge_scale(t, torch.tensor(chunk_size, device=x.device)).to(x.dtype)  # (C, c)
        chunks = chunks.reshape(N, num_chunks, C, chunk_size).permute(0, 2, 1, 3)  # (N, C, nc, c)
        return causal + chunks.reshape(N, C, num_chunks * chunk_size)[:, :, :T]

    def streaming_forward(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        """One chunk x (N, C, T) after the K//2 frames in cache (N, C, K//2). Returns (N, C, T)
        and the new cache (the last K//2 frames of cache + x)."""
        T = x.size(2)
        padded = torch.cat([cache, x], dim=2)  # (N, C, K//2 + T)
        new_cache = padded[:, :, T:]
        t = torch.arange(T, device=x.device)
        chunk = self.chunkwise_conv(x) * self._edge_scale(t, torch.tensor(T, device=x.device)).to(x.dtype)
        return self.causal_conv(padded) + chunk, new_cache


class ConvolutionModule(nn.Module):
    """(T, N, C) -> (T, N, C): x * sigmoid(gate) -> depthwise conv -> SwooshR -> linear.

    The depthwise conv is the only place where frames mix, so padded frames are zeroed right
    before it. causal=False: an ordinary depthwise conv, K//2 frames each side; causal=True:
    ChunkCausalDepthwiseConv1d.
    """

    def __init__(self, channels: int, kernel_size: int, causal: bool):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"conv kernel size must be odd, got {kernel_size}")
        self.causal = causal
        self.in_proj = nn.Linear(channels, 2 * channels)
        # a gate input with very large values (seen in early layers) would make the sigmoid's
        # gradient sparse and training slow: limit its magnitude
        self.balancer1 = Balancer(channels, channel_dim=-1,
                                  min_positive=ScheduledFloat((0.0, 0.05), (8000.0, 0.025)), max_positive=1.0,
                                  min_abs=1.5, max_abs=ScheduledFloat((0.0, 5.0), (8000.0, 10.0), default=1.0))
        self.depthwise_conv = (
            ChunkCausalDepthwiseConv1d(channels, kernel_size) if causal
            else nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        )
        self.balancer2 = Balancer(channels, channel_dim=1, min_positive=ScheduledFloat((0.0, 0.1), (8000.0, 0.05)),
                                  max_positive=1.0, min_abs=ScheduledFloat((0.0, 0.2), (20000.0, 0.5)),
                                  max_abs=10.0)
        self.whiten = Whiten(num_groups=1, whitening_limit=whitening_limit(7.5), prob=(0.025, 0.25),
                             grad_scale=0.01)
        self.out_proj = ActivationDropoutAndLinear(channels, channels, activation="SwooshR", dropout_p=0.0,
                                                   initial_scale=0.05)

    def forward(self, x: Tensor, pad_mask: Tensor | None = None, chunk_size: int = 0, lengths: Tensor | None = None,
                cache: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """
        Args:
            x: (T, N, C).  pad_mask: (N, T) True at padded frames.
            chunk_size, lengths: for causal models, see ChunkCausalDepthwiseConv1d.forward.
            cache: (N, C, K//2) conv inputs of the frames before x (streaming, causal only).
        Returns:
            (T, N, C) and the new cache (None without cache).
        """
        v, gate = self.in_proj(x).chunk(2, dim=-1)  # 2 x (T, N, C)
        v = v * torch.sigmoid(self.balancer1(gate))
        v = v.permute(1, 2, 0)  # (N, C, T): channels first for Conv1d
        if pad_mask is not None:
            v = v.masked_fill(pad_mask[:, None, :], 0.0)
        new_cache = None
        if cache is not None:
            v, new_cache = self.depthwise_conv.streaming_forward(v, cache)
        elif self.causal:
            v = self.depthwise_conv(v, chunk_size, lengths)
        else:
            v = self.depthwise_conv(v)
        v = self.balancer2(v).permute(2, 0, 1)  # (T, N, C)
        return self.out_proj(self.whiten(v)), new_cache


class FeedforwardModule(nn.Module):
    """(T, N, C) -> (T, N, C): Linear -> SwooshL -> dropout (shared over time) -> Linear."""

    def __init__(self, embed_dim: int, feedforward_dim: int, dropout: FloatLike):
        super().__init__()
        self.in_proj = nn.Linear(embed_dim, feedforward_dim)
        self.hidden_balancer = Balancer(feedforward_dim, channel_dim=-1, min_positive=0.3, max_positive=1.0,
                                        min_abs=0.75, max_abs=5.0)
        self.out_proj = ActivationDropoutAndLinear(feedforward_dim, embed_dim, activation="SwooshL", dropout_p=dropout,
                                                   dropout_shared_dim=0, initial_scale=0.1)
        self.out_whiten = Whiten(num_groups=1, whitening_limit=whitening_limit(7.5), prob=(0.025, 0.25),
                                 grad_scale=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_whiten(self.out_proj(self.hidden_balancer(self.in_proj(x))))
