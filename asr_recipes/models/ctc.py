"""CTC head on the encoder frames, its loss, and the CR-CTC consistency loss.

A transducer trained with an auxiliary CTC head (icefall's ``ctc_output``) learns a frame
classifier over the same vocabulary next to the joiner: it adds a training signal, and its
posteriors give forced alignments (word times) and CTC searches.

Consistency-regularised CTC (CR-CTC, Yao et al. 2024, arXiv 2410.05101): every utterance is
seen twice, under independently drawn SpecAugment masks (asr_recipes.data.two_views), and
each view's frame posteriors are pulled towards the other's with the other side detached.

Conventions: encoder frames T' (40 ms each), ``lens`` (N,) valid frames per utterance;
labels are in [1, V), blank = 0 (constants.BLANK_ID), the same ids the transducer uses.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr_recipes.models.conformer import make_pad_mask

REDUCTIONS = ("none", "sum", "mean")


class CtcHead(nn.Module):
    """dropout -> linear encoder_dim -> vocab_size -> log-softmax.

    forward: encoder_out (N, T', De) -> log-probabilities (N, T', V) float32 (computed in
    float32 under autocast: CTC's log-add recursion and the KL term need the precision)."""

    def __init__(self, encoder_dim: int, vocab_size: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(encoder_dim, vocab_size)

    def forward(self, encoder_out: Tensor) -> Tensor:
        logits = self.linear(self.dropout(encoder_out))  # (N, T', V)
        return logits.float().log_softmax(dim=-1)


def _reduce(per_utterance: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return per_utterance
    if reduction == "sum":
        return per_utterance.sum()
    if reduction == "mean":
        return per_utterance.mean()
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _at_least_float32(x: Tensor) -> Tensor:
    """fp16/bf16 -> float32; float32 and float64 stay as they are."""
    return x if x.dtype == torch.float64 else x.float()


def ctc_loss(log_probs: Tensor, lens: Tensor, targets: Tensor, target_lens: Tensor, blank: int = 0,
             reduction: str = "sum") -> Tensor:
    """CTC negative log-likelihood (nats) of the padded label sequences.

    Args:
        log_probs: (N, T', V) log-probabilities (CtcHead's output); frames t >= lens[n] are ignored.
        lens: (N,) int64 valid frames per utterance.
        targets: (N, U_max) int64 labels in [0, V) other than ``blank``, padded with anything.
        target_lens: (N,) int64 labels per utterance.
        blank: the blank id.
        reduction: "none" -> (N,); "sum" or "mean" (over utterances) -> scalar.
    Returns:
        The loss (float32, or float64 for float64 log_probs); inf for an utterance whose labels cannot fit its frames (CTC needs
        lens[n] >= U_n + the number of adjacent repeated labels): the trainer drops those.

    torch's own "mean" divides each utterance by its label count first; ours does not, so
    that every reduction here means the same as the transducer's (asr_recipes.models.transducer).
    """
    with torch.autocast(device_type=log_probs.device.type, enabled=False):
        per_utterance = nn.functional.ctc_loss(
            _at_least_float32(log_probs).transpose(0, 1),  # (T', N, V): torch's layout
            targets, lens, target_lens, blank=blank, reduction="none", zero_infinity=False,
        )  # (N,)
    return _reduce(per_utterance, reduction)


def consistency_loss(log_probs_a: Tensor, log_probs_b: Tensor, lens: Tensor, reduction: str = "sum") -> Tensor:
    """CR-CTC's consistency term between two views of the same utterances (icefall's
    ``forward_cr_ctc``): per utterance n,

        cr_n = 1/2 sum_{t < lens[n]} sum_v [ sg(p_b) (sg(log p_b) - log p_a)
                                           + sg(p_a) (sg(log p_a) - log p_b) ]
             = 1/2 sum_t [ KL(sg(p_b) || p_a) + KL(sg(p_a) || p_b) ]

    with sg = stop-gradient: each view is pulled towards the other, never the other way,
    so gradients reach p_a only through the first KL and p_b only through the second.
    Summed over classes and valid frames (padding masked out); the 1/2 makes it a mean over
    the two directions, as icefall halves its sum over the doubled batch.

    Args:
        log_probs_a, log_probs_b: (N, T', V) log-probabilities of the two views (CtcHead).
        lens: (N,) int64 valid frames (equal for both views: masks do not change lengths).
        reduction: "none" -> (N,); "sum" or "mean" (over utterances) -> scalar.
    """
    if log_probs_a.shape != log_probs_b.shape:
        raise ValueError(f"the two views must have equal shapes, got {tuple(log_probs_a.shape)} and "
                         f"{tuple(log_probs_b.shape)}")
    with torch.autocast(device_type=log_probs_a.device.type, enabled=False):
        a, b = _at_least_float32(log_probs_a), _at_least_float32(log_probs_b)
        kl_b_a = nn.functional.kl_div(a, b.detach(), reduction="none", log_target=True)  # (N, T', V)
        kl_a_b = nn.functional.kl_div(b, a.detach(), reduction="none", log_target=True)  # (N, T', V)
        padding = make_pad_mask(lens, a.size(1)).unsqueeze(-1)  # (N, T', 1)
        per_frame = (kl_b_a + kl_a_b).masked_fill(padding, 0.0)  # (N, T', V); masked_fill also clears nan
        per_utterance = 0.5 * per_frame.sum(dim=(1, 2))  # (N,)
    return _reduce(per_utterance, reduction)
