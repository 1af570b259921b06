"""Which cuts a transducer can train on: one scan per manifest, counted and logged.

A cut is dropped (first matching reason wins, in this order) when:

- ``empty_text``: its transcript is empty or whitespace (or it has no supervision);
- ``too_short`` / ``too_long``: its duration is outside ``[min_duration, max_duration]`` s;
- ``too_few_frames``: its encoder frames ``T' = output_lengths(num_frames)`` are fewer
  than its token count ``U`` (a transducer emits at most one token per encoder frame in
  the pruned/simple losses' topology). ``output_lengths`` is the model's
  ``encoder.output_lengths`` (data does not know models: whoever builds the model passes
  it in); without one, the x4 Conv2d front end's formula (the Conformer's,
  constants.frames_after_subsampling) is used.

Which checks apply depends on the ``mode`` of the manifest:

- ``train``: all of them;
- ``valid``: ``empty_text`` and ``too_few_frames`` (the loss needs them), no duration
  bounds, so the validation loss covers the whole dev set;
- ``test``: only cuts the encoder cannot run on at all (``T' < 1``, counted as
  ``too_few_frames``): dropping test utterances would change the WER.

Cuts whose tokens include ``tokenizer.unk_id`` are kept but counted and logged: they
usually mean the tokenizer was trained on other text.

The scan reads the (lazy) manifest once and keeps only the dropped ids; the sampler
then filters with :class:`DropIds`, which is cheap and picklable.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from asr_recipes.constants import frames_after_subsampling

log = logging.getLogger(__name__)

REASONS = ("empty_text", "too_short", "too_long", "too_few_frames")


def cut_text(cut) -> str:
    """The transcript of a cut: its supervisions' texts joined by spaces."""
    return " ".join(s.text.strip() for s in cut.supervisions if s.text and s.text.strip())


@dataclass(frozen=True)
class FilterConfig:
    """Duration bounds in seconds (inclusive)."""

    min_duration: float = 1.0
    max_duration: float = 20.0

    def __post_init__(self):
        if not 0 <= self.min_duration <= self.max_duration:
            raise ValueError(
                f"Filter bounds must satisfy 0 <= min_duration <= max_duration, got "
                f"min_duration={self.min_duration}, max_duration={self.max_duration}."
            )


@dataclass
class FilterReport:
    """What one scan of a manifest found."""

    name: str
    total: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    #: One example per reason, e.g. "1089-0001: 12 encoder frames < 15 tokens".
    examples: dict = field(default_factory=dict)
    dropped_ids: set = field(default_factory=set)
    #: Kept cuts whose tokens contain <unk>.
    num_with_unk: int = 0
    unk_example: str | None = None
    #: Seconds of audio in the kept cuts.
    kept_duration: float = 0.0

    @property
    def kept(self) -> int:
        return self.total - len(self.dropped_ids)

    def log(self) -> None:
        reasons = ", ".join(f"{r}={self.dropped[r]}" for r in REASONS)
        log.info("%s: kept %d of %d cuts; dropped: %s", self.name, self.kept, self.total, reasons)
        for reason, example in self.examples.items():
            log.info("%s: %s, e.g. %s", self.name, reason, example)
        if self.num_with_unk:
            log.warning(
                "%s: %d kept cuts have transcripts with <unk> tokens (e.g. %s); "
                "was the tokenizer trained on this corpus' text?",
                self.name, self.num_with_unk, self.unk_example,
            )


MODES = ("train", "valid", "test")


def scan_cuts(
    cuts: Iterable, tokenizer, config: FilterConfig, name: str, mode: str = "train",
    output_lengths: Callable[[int], int] = frames_after_subsampling,
) -> FilterReport:
    """Apply the filters of ``mode`` to every cut of ``cuts`` once; log and return the report.

    Args:
        cuts: cuts with features attached (``num_frames`` = feature frames T).
        tokenizer: ``encode(list[str]) -> list[list[int]]`` and ``unk_id``.
        name: manifest name used in log lines.
        mode: ``train`` | ``valid`` | ``test``, see the module docstring.
        output_lengths: encoder frames from feature frames (the model's encoder.output_lengths).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    report = FilterReport(name)
    unk_id = getattr(tokenizer, "unk_id", None)
    for cut in cuts:
        report.total += 1
        text = cut_text(cut)
        reason, detail = None, ""
        enc_frames = int(output_lengths(cut.num_frames))
        if not text and mode != "test":
            reason = "empty_text"
        elif mode == "train" and cut.duration < config.min_duration:
            reason, detail = "too_short", f"{cut.duration:.2f} s < {config.min_duration} s"
        elif mode == "train" and cut.duration > config.max_duration:
            reason, detail = "too_long", f"{cut.duration:.2f} s > {config.max_duration} s"
        elif enc_frames < 1:
            reason, detail = "too_few_frames", f"{enc_frames} encoder frames"
        else:
            tokens = tokenizer.encode([text])[0]
            if mode != "test" and enc_frames < len(tokens):
                reason = "too_few_frames"
                detail = f"{enc_frames} encoder frames < {len(tokens)} tokens"
            elif unk_id is not None and unk_id in tokens:
                report.num_with_unk += 1
                report.unk_example = report.unk_example or f"{cut.id}: {text!r}"
        if reason is not None:
            report.dropped[reason] += 1
            report.dropped_ids.add(cut.id)
            report.examples.setdefault(reason, f"{cut.id}: {detail}".rstrip(": "))
        else:
            report.kept_duration += cut.duration
    report.log()
    return report


class DropIds:
    """Picklable cut predicate: False for the ids in ``ids``."""

    def __init__(self, ids: Iterable[str]):
        self.ids = frozenset(ids)

    def __call__(self, cut) -> bool:
        return cut.id not in self.ids
