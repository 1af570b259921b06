"""Stateless transducer decoder (prediction network without recurrence).

The decoder sees only the last `context_size` tokens: an embedding followed by a
depthwise Conv1d whose kernel spans exactly those tokens, then ReLU (Ghodsi et al.
2020, "RNN-transducer with stateless prediction network"). A finite context makes beam
search cheap: hypotheses with the same last tokens share one decoder output.

Blank (id 0) doubles as start-of-sequence and as left padding, so at every label
position u the conv sees tokens u-context_size+1 .. u of the SOS-prefixed sequence,
with positions before the start filled by blank.
"""

import torch
from torch import Tensor, nn

from asr_recipes.constants import BLANK_ID


class StatelessDecoder(nn.Module):
    """Args:
        vocab_size: V, including blank.
        decoder_dim: D, embedding and output dimension.
        context_size: number of previous tokens the output depends on. 1 means no conv
            (the output is a function of the last token alone).
        blank_id: start symbol and padding id. Its embedding is fixed at zero
            (padding_idx), so "no history" contributes nothing.
    """

    def __init__(self, vocab_size: int, decoder_dim: int, context_size: int, blank_id: int = BLANK_ID):
        super().__init__()
        if context_size < 1:
            raise ValueError(f"context_size must be >= 1, got {context_size}")
        self.vocab_size = vocab_size
        self.output_dim = decoder_dim
        self.context_size = context_size
        self.blank_id = blank_id
        self.embedding = nn.Embedding(vocab_size, decoder_dim, padding_idx=blank_id)
        # depthwise (groups=D), no padding inside the conv: forward() left-pads the tokens
        self.conv = (
            nn.Conv1d(decoder_dim, decoder_dim, context_size, groups=decoder_dim, bias=False)
            if context_size > 1
            else None
        )

    def forward(self, y: Tensor, need_pad: bool = True) -> Tensor:
        """
        Args:
            y: (N, U) int64 token ids.
                need_pad=True (training): the SOS-prefixed label sequence, y[:, 0] = blank;
                    padded positions should hold blank. Output u depends on
                    y[:, u-context_size+1 .. u], with blank before position 0.
                need_pad=False (decoding step): exactly context_size most recent tokens
                    per row, oldest first (left-padded with blank by the caller).
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
        if need_pad and self.context_size > 1:
            y = nn.functional.pad(y, (self.context_size - 1, 0), value=self.blank_id)  # (N, U + c - 1)
        x = self.embedding(y)  # (N, U', D)
        if self.conv is not None:
            x = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (N, D, U') -> (N, D, U) -> (N, U, D)
        return torch.relu(x)  # (N, U, D) or (N, 1, D)
