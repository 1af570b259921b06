"""The prune_range report: how much of a trained model's full lattice each s_range keeps.

    lattice_config, source = training_lattice(ckpt, overrides={})
    sample = collect(model, loaders, [2, 3, 4, 5, 8], lattice_config, max_batches=20,
                     plot_s_range=lattice_config.prune_range)
    print(markdown(sample, [2, 3, 4, 5, 8], {"checkpoint": "..."}))   # one table row per s_range
    plot_lattice(sample.lattice, lattice_config.prune_range, "band.png")  # asr_recipes.diagnostics.heatmap

The band of each s_range is the one training would use with the checkpoint's loss settings
(:func:`training_lattice`); the numbers are defined in
:mod:`asr_recipes.diagnostics.prune_coverage`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from asr_recipes.diagnostics.prune_coverage import PruneStats, UtteranceLattice, measure_batch
from asr_recipes.models.lattice import LatticeConfig

log = logging.getLogger(__name__)


@dataclass
class ReportSample:
    """What :func:`collect` measured."""

    stats: Dict[int, PruneStats]
    parts: List[str]
    seconds: float
    #: the utterance for the picture: the requested cut, else the lowest coverage at plot_s_range
    lattice: Optional[UtteranceLattice] = None
    plot_s_range: Optional[int] = None
    max_labels_per_frame: float = 0.0  # the largest S_b / T_b of the sample
    skipped_parts: List[str] = field(default_factory=list)


def training_lattice(ckpt: Mapping[str, Any], overrides: Mapping[str, Any]) -> tuple[LatticeConfig, str]:
    """(LatticeConfig, where its values came from) for a checkpoint.

    The values are the training loss's, from the checkpoint's ``train_config`` record; a
    non-None entry of ``overrides`` (prune_range, lm_scale, am_scale, delay_penalty) wins.
    Checkpoints without the record get LatticeConfig's defaults (with a warning).
    """
    loss = dict(ckpt.get("train_config", {}).get("loss") or {})
    source = "the checkpoint's training config"
    if not loss:
        source = "the default lattice settings (the checkpoint records no training config)"
        log.warning("checkpoint has no train_config: using the default lattice settings %s", LatticeConfig())
    if loss.get("type", "pruned") != "pruned":
        log.warning("the model was trained with the %s loss; its simple projections (which choose the band) "
                    "were not trained", loss["type"])
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        source += f", overridden by {given}"
    loss.update(given)
    return LatticeConfig.from_mapping(loss), source


@torch.no_grad()
def collect(model, loaders: Mapping[str, Any], s_ranges: Sequence[int], lattice_config: LatticeConfig,
            max_batches: int, device: torch.device | str = "cpu", plot_s_range: Optional[int] = None,
            plot_cut_id: Optional[str] = None, max_elements: int = 2**26) -> ReportSample:
    """Measures the first ``max_batches`` batches of every loader ({part: DataLoader})."""
    if not s_ranges:
        raise ValueError("s_ranges must list at least one prune range, e.g. [2,3,4,5,8]")
    plot_s_range = plot_s_range if plot_s_range is not None else s_ranges[0]
    ranges = sorted(set(s_ranges) | {plot_s_range})
    started = time.time()
    sample = ReportSample({s: PruneStats() for s in ranges}, list(loaders), 0.0, plot_s_range=plot_s_range)
    model.eval()
    for part, loader in loaders.items():
        seen = 0
        for i, batch in enumerate(loader):
            if i >= max_batches:
                break
            stats, lattices = measure_batch(
                model, batch["features"].to(device), batch["feature_lens"].to(device), batch["tokens"].to(device),
                batch["token_lens"].to(device), ranges, lattice_config, cut_ids=batch["cut_ids"], keep_lattices=True,
                max_elements=max_elements)
            for s_range, s in stats.items():
                sample.stats[s_range].add(s)
            for lattice in lattices:
                S1, T = lattice.occupation.shape
                sample.max_labels_per_frame = max(sample.max_labels_per_frame, (S1 - 1) / max(T, 1))
                sample.lattice = _pick(sample.lattice, lattice, plot_s_range, plot_cut_id)
            seen += 1
        if seen == 0:
            sample.skipped_parts.append(part)
    sample.seconds = time.time() - started
    if plot_cut_id is not None and (sample.lattice is None or sample.lattice.cut_id != plot_cut_id):
        raise ValueError(f"plot_cut_id={plot_cut_id!r} is not among the sampled utterances of {sample.parts}; "
                         "raise max_batches or pick another cut")
    return sample


def _pick(current: Optional[UtteranceLattice], candidate: UtteranceLattice, s_range: int,
          cut_id: Optional[str]) -> Optional[UtteranceLattice]:
    if cut_id is not None:
        return candidate if candidate.cut_id == cut_id else current
    if current is None:
        return candidate
    # lowest coverage; among equals (often all 1.0 for a trained model) the longest transcript
    key = lambda lat: (-lat.coverage[s_range], lat.occupation.shape[0])  # noqa: E731
    return candidate if key(candidate) > key(current) else current


def markdown(sample: ReportSample, s_ranges: Sequence[int], info: Mapping[str, str]) -> str:
    """The report as markdown: ``info`` lines (checkpoint, settings, ...) and one row per s_range."""
    any_stats = next(iter(sample.stats.values()))
    lines = [f"- {k}: {v}" for k, v in info.items()]
    lines.append(
        f"- sample: {', '.join(sample.parts)}; {any_stats.batches} batches, {any_stats.utterances} utterances, "
        f"{any_stats.frames:.0f} encoder frames, {any_stats.labels:.0f} labels "
        f"({_ratio(any_stats.labels, any_stats.frames):.2f} per frame on average, "
        f"{sample.max_labels_per_frame:.2f} at most); full loss {_ratio(any_stats.full_loss, any_stats.frames):.4f} "
        f"nats per frame; measured in {sample.seconds:.1f} s")
    if sample.skipped_parts:
        lines.append(f"- no batches in: {', '.join(sample.skipped_parts)}")
    lines += [
        "",
        "| s_range | coverage | occupation outside the band | pruned - full loss per frame (nats) | "
        "best path leaves the band | batches widened |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s_range in s_ranges:
        s = sample.stats[s_range]
        outside = (s.mass_total - s.mass_inside) / s.mass_total if s.mass_total > 0 else math.nan
        lines.append(f"| {s_range} | {100 * s.coverage:.4f}% | {outside:.2e} | {s.gap_per_frame:.2e} | "
                     f"{s.escapes} / {s.utterances} | {s.widened_batches} / {s.batches} |")
    lines += [
        "",
        "coverage: share of the full joiner's lattice occupation (the posterior probability that the "
        "alignment leaves each node) inside the band that get_rnnt_prune_ranges picks from the simple "
        "loss; pruned - full loss = -log P(alignment stays in the band); best path: the Viterbi path of "
        "the full lattice; widened: batches where some transcript was too long for s_range (k2 widens the band).",
    ]
    return "\n".join(lines) + "\n"


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan
