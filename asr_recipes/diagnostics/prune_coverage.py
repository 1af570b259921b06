"""How much of the full model's lattice the pruned band keeps: the measurement behind prune_range.

For one batch (model in eval mode, no gradients):

    encoder, decoder -> Transducer.simple_loss occupations -> get_rnnt_prune_ranges(s_range)
        (exactly the band training uses, widening included)
    full joiner on every (t, s) pair -> full lattice (px, py) -> occupations, loss, best path

and per requested s_range, summed over utterances (see :class:`PruneStats`):

* coverage: the share of the full lattice's node-occupation mass inside the band. The
  occupation of node (s, t) is the posterior probability that the alignment leaves it (by its
  blank or its symbol arc); per utterance it sums to S_b + T_b (every path leaves that many
  nodes). A path survives pruning iff every node it leaves lies inside the band.
* gap: pruned loss - full loss = -log P(the alignment stays inside the band | model), >= 0:
  the pruned loss reads the same joiner log-probs, minus the paths that leave the band.
* escapes: utterances whose single best (Viterbi) path of the full lattice leaves the band.

The full lattice costs a joiner evaluation on all N x T' x (U+1) pairs; it is computed a few
utterances at a time (``max_elements``) so that memory stays bounded for long utterances.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

import asr_recipes.rnnt as k2
from asr_recipes.models.lattice import LatticeConfig
from asr_recipes.models.transducer import Transducer, lattice_boundary
from asr_recipes.rnnt.logprobs import add_delay_penalty
from asr_recipes.rnnt.viterbi import best_path


@dataclass
class PruneStats:
    """Sums over utterances for one s_range; add batches (and ranks) with :meth:`add`."""

    utterances: int = 0
    frames: float = 0.0  # encoder frames
    labels: float = 0.0
    mass_inside: float = 0.0
    mass_total: float = 0.0
    gap: float = 0.0  # sum over utterances of pruned - full loss (nats)
    full_loss: float = 0.0  # sum of full losses (nats)
    escapes: int = 0  # utterances whose best path leaves the band
    widened_batches: int = 0  # batches whose band get_rnnt_prune_ranges had to widen
    batches: int = 0

    def add(self, other: "PruneStats") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_list(self) -> List[float]:
        """The sums in field order (for an all-reduce); :meth:`from_list` inverts it."""
        return [float(getattr(self, f.name)) for f in fields(self)]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> "PruneStats":
        kinds = {f.name: f.type for f in fields(cls)}
        return cls(**{name: (int(round(v)) if kinds[name] in (int, "int") else float(v))
                      for name, v in zip(kinds, values)})

    @property
    def coverage(self) -> float:
        return self.mass_inside / self.mass_total if self.mass_total > 0 else float("nan")

    @property
    def gap_per_frame(self) -> float:
        return self.gap / self.frames if self.frames > 0 else float("nan")


@dataclass
class UtteranceLattice:
    """One utterance's full lattice and bands, for plotting (numpy, unpadded)."""

    cut_id: str
    occupation: np.ndarray  # (S_b+1, T_b) node occupation
    best_path: np.ndarray  # (S_b+1, T_b) bool: nodes the best path leaves
    ranges: Dict[int, np.ndarray] = field(default_factory=dict)  # s_range -> (T_b, R) label positions
    coverage: Dict[int, float] = field(default_factory=dict)
    gap: Dict[int, float] = field(default_factory=dict)  # pruned - full loss (nats)


@dataclass
class FullLattice:
    """Per-utterance results of the full joiner's lattice for a batch of N utterances."""

    loss: Tensor  # (N,) full loss (nats), delay penalty included
    occupation: Tensor  # (N, U+1, T') node occupation, 0 past each utterance's end
    best_path: Tensor  # (N, U+1, T') bool: nodes the Viterbi path leaves


def full_lattice(model: Transducer, encoder_out: Tensor, decoder_out: Tensor, y: Tensor, boundary: Tensor,
                 delay_penalty: float = 0.0, max_elements: int = 2**26, rnnt_type: str = "regular") -> FullLattice:
    """Loss, node occupation and best path of the full joiner's lattice.

    Args:
      encoder_out (N, T', De), decoder_out (N, U+1, Dd), y (N, U), boundary (N, 4): as for
      Transducer.simple_loss. max_elements: bound on N_chunk * T' * (U+1) * max(J, V), the
      size of the joiner's activations for a chunk of utterances (at least one utterance).
      rnnt_type: "regular" or "modified" (px (n, U, T'+1) or (n, U, T')), as trained.
    """
    N, T, _ = encoder_out.shape
    U1 = decoder_out.shape[1]
    enc = model.joiner.encoder_proj(encoder_out)  # (N, T', J)
    dec = model.joiner.decoder_proj(decoder_out)  # (N, U+1, J)
    width = max(enc.shape[-1], model.vocab_size)
    chunk = max(1, max_elements // max(1, T * U1 * width))
    losses, occupations, paths = [], [], []
    for i in range(0, N, chunk):
        c = slice(i, i + chunk)
        logits = model.joiner(enc[c].unsqueeze(2), dec[c].unsqueeze(1), project_input=False)  # (n, T', U+1, V)
        px, py = k2.get_rnnt_logprobs_joint(logits.float(), y[c], model.blank_id, rnnt_type, boundary[c])
        px = add_delay_penalty(px, boundary[c], rnnt_type, delay_penalty)  # as the losses do
        scores, (px_grad, py_grad) = k2.mutual_information_recursion(px, py, boundary[c], return_grad=True)
        # node (s, t) is left by its blank arc py[s, t] or its symbol arc px[s, t] (none from s = U)
        occupation = py_grad + torch.nn.functional.pad(px_grad[:, :, :T], (0, 0, 0, 1))  # (n, U+1, T')
        _, on_path = best_path(px, py, boundary[c])  # (n, U+1, T'+1)
        losses.append(-scores)
        occupations.append(occupation)
        paths.append(on_path[:, :, :T] & _frames_mask(boundary[c], T))  # the end node is left by no arc
    return FullLattice(torch.cat(losses), torch.cat(occupations), torch.cat(paths))


def _frames_mask(boundary: Tensor, T: int) -> Tensor:
    """(N, 1, T) bool: frames t < T_n."""
    return (torch.arange(T, device=boundary.device).reshape(1, 1, T) < boundary[:, 3].reshape(-1, 1, 1))


def band_mask(ranges: Tensor, num_positions: int) -> Tensor:
    """ranges (N, T', R) -> (N, num_positions, T') bool, True at the kept (s, t) nodes."""
    N, T, R = ranges.shape
    mask = torch.zeros(N, num_positions, T, dtype=torch.bool, device=ranges.device)
    return mask.scatter_(1, ranges.transpose(1, 2), True)


@torch.no_grad()
def measure_batch(model: Transducer, features: Tensor, feature_lens: Tensor, tokens: Tensor, token_lens: Tensor,
                  s_ranges: Sequence[int], lattice_config: LatticeConfig = LatticeConfig(),
                  cut_ids: Optional[Sequence[str]] = None, keep_lattices: bool = False,
                  max_elements: int = 2**26) -> tuple[Dict[int, PruneStats], List[UtteranceLattice]]:
    """The diagnostic for one batch (inputs as for Transducer.forward, on the model's device).

    ``lattice_config``: the training loss's lattice settings (what shapes the band); its prune_range
    is replaced by each of ``s_ranges`` in turn.

    Returns ({s_range: PruneStats of this batch}, per-utterance lattices if keep_lattices).
    The model must be in eval mode for the numbers to describe the model (no dropout).
    """
    y, sos_y = model._labels(tokens, token_lens)  # (N, U), (N, U+1)
    encoder_out, encoder_lens = model.encode(features, feature_lens)  # (N, T', De), (N,)
    decoder_out = model.decoder(sos_y)  # (N, U+1, Dd)
    boundary = lattice_boundary(token_lens, encoder_lens)  # (N, 4)
    _, (px_grad, py_grad) = model.simple_loss(encoder_out, decoder_out, y, boundary, lattice_config, "none")
    full = full_lattice(model, encoder_out, decoder_out, y, boundary, lattice_config.delay_penalty, max_elements,
                        lattice_config.rnnt_type)
    N, U1, T = full.occupation.shape
    valid = _frames_mask(boundary, T)  # (N, 1, T')
    occupation = full.occupation * valid
    mass_total = occupation.sum(dim=(1, 2))  # (N,) = U_n + T'_n up to rounding

    stats: Dict[int, PruneStats] = {}
    lattices = [UtteranceLattice(cut_ids[n] if cut_ids else str(n),
                                 occupation[n, : int(token_lens[n]) + 1, : int(encoder_lens[n])].cpu().numpy(),
                                 full.best_path[n, : int(token_lens[n]) + 1, : int(encoder_lens[n])].cpu().numpy())
                for n in range(N)] if keep_lattices else []
    for s_range in s_ranges:
        ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range=s_range)  # (N, T', R)
        band_lattice = replace(lattice_config, prune_range=s_range)
        pruned = model.pruned_loss(encoder_out, decoder_out, y, ranges, boundary, band_lattice, "none")
        band = band_mask(ranges, U1)  # (N, U+1, T')
        inside = (occupation * band).sum(dim=(1, 2))  # (N,)
        gap = pruned - full.loss  # (N,)
        escapes = (full.best_path & ~band).any(dim=2).any(dim=1)  # (N,)
        values = torch.stack([inside.sum(), mass_total.sum(), gap.sum(), full.loss.sum(), escapes.sum()]).tolist()
        stats[s_range] = PruneStats(
            utterances=N, frames=float(encoder_lens.sum()), labels=float(token_lens.sum()),
            mass_inside=values[0], mass_total=values[1], gap=values[2], full_loss=values[3],
            escapes=int(values[4]), widened_batches=int(ranges.shape[2] > min(s_range, U1)), batches=1,
        )
        for n, lattice in enumerate(lattices):
            lattice.ranges[s_range] = ranges[n, : int(encoder_lens[n])].cpu().numpy()
            lattice.coverage[s_range] = float(inside[n] / mass_total[n]) if mass_total[n] > 0 else float("nan")
            lattice.gap[s_range] = float(gap[n])
    return stats, lattices


def measure_batches(model: Transducer, batches: Iterable[dict], s_ranges: Sequence[int], lattice_config: LatticeConfig,
                    device: torch.device | str = "cpu") -> Dict[int, PruneStats]:
    """:func:`measure_batch` summed over data-pipeline batches (dicts with "features",
    "feature_lens", "tokens", "token_lens"); {s_range: PruneStats}."""
    totals = {s_range: PruneStats() for s_range in s_ranges}
    for batch in batches:
        stats, _ = measure_batch(model, batch["features"].to(device), batch["feature_lens"].to(device),
                                 batch["tokens"].to(device), batch["token_lens"].to(device), s_ranges, lattice_config)
        for s_range, s in stats.items():
            totals[s_range].add(s)
    return totals

