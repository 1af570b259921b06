"""CTM files (NIST time-marked conversation): one line per word,

    <utterance id> <channel> <start s> <duration s> <word>

times in seconds from the start of the utterance (for bin.decode: of the cut), 3 decimals,
channel ``1``; lines sorted by utterance id, then by start (as Kaldi writes them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from asr_recipes.atomic_files import write_atomic

#: (word, start s, end s)
TimedWord = tuple[str, float, float]


def format_ctm(words: Mapping[str, Sequence[TimedWord]], channel: str = "1") -> str:
    lines = []
    for utt_id in sorted(words):
        if any(c.isspace() for c in utt_id):
            raise ValueError(f"utterance id {utt_id!r} contains whitespace; CTM fields are space-separated")
        for word, start, end in sorted(words[utt_id], key=lambda w: w[1]):
            lines.append(f"{utt_id} {channel} {start:.3f} {max(end - start, 0.0):.3f} {word}\n")
    return "".join(lines)


def write_ctm(path: str | os.PathLike, words: Mapping[str, Sequence[TimedWord]]) -> Path:
    """Write {utterance id: [(word, start, end)]} atomically."""
    return write_atomic(path, format_ctm(words))


def read_ctm(path: str | os.PathLike) -> dict[str, list[TimedWord]]:
    """{utterance id: [(word, start, end)]}; ValueError names the line of a malformed entry."""
    out: dict[str, list[TimedWord]] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith(";;"):
            continue
        fields = line.split()
        try:
            utt, _, start, dur, word = fields[:5]
            out.setdefault(utt, []).append((word, float(start), float(start) + float(dur)))
        except ValueError:
            raise ValueError(f"{path}:{lineno}: not a CTM line (<utt> <channel> <start> <duration> <word>): "
                             f"{line!r}") from None
    return out
