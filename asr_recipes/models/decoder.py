"""Stateless transducer decoder (prediction network without recurrence).

The decoder sees only the last `context_size` tokens: an embedding followed by a
Conv1d over time whose kernel spans exactly those tokens, then ReLU (Ghodsi et al.
2020, "RNN-transducer with stateless prediction network"). A finite context makes beam
search cheap: hypotheses with the same last tokens share one decoder output.

Blank (id 0) is the start-of-sequence symbol. Positions before the start have no token: their
embedding is a zero vector, written as id -1 ("before the start"). So at every label
position u the conv sees tokens u-context_size+1 .. u of the SOS-prefixed sequence, with
zeros before position 0, and a search starts from the context [-1] * (context_size - 1) +
[blank] (icefall's and sherpa-onnx's convention).

Two variants, by constructor options:
* ours (default): blank's embedding is fixed at zero (padding_idx), so blank and "before the
  start" are the same vector; depthwise conv; ReLU also when context_size == 1.
* icefall's (``learned_blank=True, conv_groups=decoder_dim // 4, relu_without_conv=False``,
  with ``balancers=True`` to train like it): blank has a learned embedding, conv groups of 4
  channels, no ReLU without a conv, and gradient-only balancers on the embeddings and the output
  (identity in eval). Its parameters have icefall's names and shapes, so icefall's weights load.
"""

import torch
from torch import Tensor, nn

from asr_recipes.constants import BLANK_ID
from asr_recipes.models.zipformer.constraints import Balancer

#: Token id for a position before the start of the sequence (zero embedding).
BEFORE_START = -1


class StatelessDecoder(nn.Module):
    """Args:
        vocab_size: V, including blank.
        decoder_dim: D, embedding and output dimension.
        context_size: number of previous tokens the output depends on. 1 means no conv
            (the output is a function of the last token alone).
        blank_id: start symbol id.
        conv_groups: groups of the context conv (None: D, depthwise); D must be a multiple.
        learned_blank: blank gets a trained embedding; False: fixed at zero (padding_idx).
        relu_without_conv: apply the ReLU also when context_size == 1 (there is no conv).
        balancers: gradient-only Balancers on the embeddings and the output (training only).
    """

    def __init__(self, vocab_size: int, decoder_dim: int, context_size: int, blank_id: int = BLANK_ID,
                 conv_groups: int | None = None, learned_blank: bool = False, relu_without_conv: bool = True,
                 balancers: bool = False):
        super().__init__()
        if context_size < 1:
            raise ValueError(f"context_size must be >= 1, got {context_size}")
        groups = decoder_dim if conv_groups is None else conv_groups
        if groups < 1 or decoder_dim % groups:
            raise ValueError(f"conv_groups must divide decoder_dim={decoder_dim}, got {conv_groups}")
        self.vocab_size = vocab_size
        self.output_dim = decoder_dim
        self.context_size = context_size
        self.blank_id = blank_id
        self.relu_without_conv = relu_without_conv
        self.embedding = nn.Embedding(vocab_size, decoder_dim, padding_idx=None if learned_blank else blank_id)
        # no padding inside the conv: forward() left-pads the embeddings
        self.conv = (
            nn.Conv1d(decoder_dim, decoder_dim, context_size, groups=groups, bias=False) if context_size > 1 else None
        )
        self.balancer = self.balancer2 = None
        if balancers:  # keep the embeddings' and outputs' magnitudes from drifting (averaging-friendly)

            def balancer():
                return Balancer(decoder_dim, channel_dim=-1, min_positive=0.0, max_positive=1.0, min_abs=0.5,
                                max_abs=1.0, prob=0.05)

            self.balancer = balancer()
            self.balancer2 = balancer() if context_size > 1 else None

    def _embed(self, y: Tensor) -> Tensor:
        """(N, U) ids, BEFORE_START allowed -> (N, U, D); BEFORE_START gives zeros."""
        return self.embedding(y.clamp(min=0)) * (y >= 0).unsqueeze(-1).to(self.embedding.weight.dtype)

    def forward(self, y: Tensor, need_pad: bool = True) -> Tensor:
        """
        Args:
            y: (N, U) int64 token ids (BEFORE_START = -1 allowed: a zero embedding).
                need_pad=True (training): the SOS-prefixed label sequence, y[:, 0] = blank;
                    padded positions should hold blank. Output u depends on
                    y[:, u-context_size+1 .. u], with zero embeddings before position 0.
                need_pad=False (decoding step): exactly context_size most recent tokens
                    per row, oldest first (left-padded by the caller; a search starts from
                    [-1] * (context_size - 1) + [blank]).
            need_pad: see above.
        Returns:
            (N, U, D) if need_pad else (N, 1, D).
        """
        if y.dtype != torch.int64:
            raise ValueError(f"decoder tokens must be int64, got {y.dtype}")
        if not need_pad and y.size(1) != self.context_size:
            raise ValueError(
                f"with need_pad=False the decoder needs exactly context_size={self.context_size} "
                f"tokens per row, got {y.size(1)}"
            )
        x = self._embed(y)  # (N, U, D)
        if self.balancer is not None:
            x = self.balancer(x)
        if self.conv is None:
            return torch.relu(x) if self.relu_without_conv else x
        x = x.transpose(1, 2)  # (N, D, U): Conv1d wants channels first
        if need_pad:
            x = nn.functional.pad(x, (self.context_size - 1, 0))  # (N, D, U + c - 1): zeros before the start
        x = torch.relu(self.conv(x).transpose(1, 2))  # (N, U or 1, D)
        return x if self.balancer2 is None else self.balancer2(x)
