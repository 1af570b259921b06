"""icefall-compatible scoring files, written atomically, and readers for them.

For a test set ``<set>`` and a decoding key ``<key>`` (e.g. ``greedy_search``),
``write_scoring_files`` writes into out_dir:

* ``recogs-<set>-<key>.txt``: per utterance, sorted by id, two lines
  ``<id>:\\tref=['A', 'B']`` and ``<id>:\\thyp=['A', 'C']`` (Python list literals of the
  tokens as given, like icefall's store_transcripts).
* ``errs-<set>-<key>.txt``: icefall write_error_stats layout. Line 1 is always
  ``%WER = x.xx`` so existing parsers find it; in char mode it holds the CER and a
  ``%CER = x.xx`` line with the same number follows. Then ``Errors: I insertions, D
  deletions, S substitutions, over N reference words (C correct)`` ("words" are characters
  in char mode, as in icefall), and the sections PER-UTT DETAILS (``(ref->hyp)``, ``*`` for
  the missing side), SUBSTITUTIONS, DELETIONS, INSERTIONS and PER-WORD STATS.
* ``wer-summary-<set>-<key>.txt``: ``settings\\tWER`` then ``<key>\\t<rate>`` (the header
  says WER in char mode too, as icefall's does).
"""

from __future__ import annotations

import ast
import collections
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from asr_recipes.atomic_files import write_atomic
from asr_recipes.scoring.stats import ErrorStats, Result, score

EPS = "*"


def scoring_paths(out_dir: str | os.PathLike, test_set: str, key: str) -> dict[str, Path]:
    """{"recogs", "errs", "wer_summary"} -> file paths for this set and key."""
    for name, value in (("test_set", test_set), ("key", key)):
        if not value or re.search(r"[\s/]", value):
            raise ValueError(f"{name} {value!r} must be non-empty without '/' or whitespace "
                             "(it becomes part of a file name)")
    out_dir = Path(out_dir)
    return {kind: out_dir / f"{kind.replace('_', '-')}-{test_set}-{key}.txt"
            for kind in ("recogs", "errs", "wer_summary")}


def write_scoring_files(out_dir: str | os.PathLike, test_set: str, key: str,
                        results: Sequence[Result], unit: str = "word") -> ErrorStats:
    """Score ``results`` ((id, ref tokens, hyp tokens) per utterance) and write the three
    files; returns the stats (``stats.summary(test_set, key)`` is the one-line report)."""
    paths = scoring_paths(out_dir, test_set, key)
    results = list(results)  # iterated twice
    stats = score(results, unit)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tokens = {utt_id: (list(ref), list(hyp)) for utt_id, ref, hyp in results}
    recogs = []
    for utt_id in sorted(tokens):
        ref, hyp = tokens[utt_id]
        recogs.append(f"{utt_id}:\tref={ref!r}\n{utt_id}:\thyp={hyp!r}\n")
    write_atomic(paths["recogs"], "".join(recogs))
    write_atomic(paths["errs"], format_errs(stats))
    write_atomic(paths["wer_summary"], f"settings\tWER\n{key}\t{stats.error_rate:.2f}\n")
    return stats


def format_errs(stats: ErrorStats) -> str:
    """The errs-<set>-<key>.txt text for ``stats``."""
    rate = f"{stats.error_rate:.2f}"
    lines = [f"%WER = {rate}"]
    if stats.unit == "char":
        lines.append(f"%CER = {rate}")
    lines += [
        f"Errors: {stats.ins} insertions, {stats.dels} deletions, {stats.subs} substitutions, "
        f"over {stats.ref_len} reference words ({stats.correct} correct)",
        "Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, "
        "DELETIONS:, INSERTIONS:, PER-WORD STATS:",
        "",
        "PER-UTT DETAILS: corr or (ref->hyp)",
    ]
    subs, dels, ins = collections.Counter(), collections.Counter(), collections.Counter()
    # word -> [correct, times in ref, times in hyp]
    per_word = collections.defaultdict(lambda: [0, 0, 0])
    for utt in stats.utterances:
        shown = []
        for r, h in utt.pairs:
            if r == h:
                shown.append(r)
                per_word[r][0] += 1
            else:
                shown.append(f"({EPS if r is None else r}->{EPS if h is None else h})")
                if r is None:
                    ins[h] += 1
                elif h is None:
                    dels[r] += 1
                else:
                    subs[(r, h)] += 1
            if r is not None:
                per_word[r][1] += 1
            if h is not None:
                per_word[h][2] += 1
        lines.append(f"{utt.utt_id}:\t" + " ".join(shown))
    lines += ["", "SUBSTITUTIONS: count ref -> hyp"]
    lines += [f"{n}   {r} -> {h}" for (r, h), n in _by_count(subs)]
    lines += ["", "DELETIONS: count ref"]
    lines += [f"{n}   {w}" for w, n in _by_count(dels)]
    lines += ["", "INSERTIONS: count hyp"]
    lines += [f"{n}   {w}" for w, n in _by_count(ins)]
    lines += ["", "PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp"]
    # tot_errs: error events the word takes part in, from either side.
    rows = [(w, c, (nr - c) + (nh - c), nr, nh) for w, (c, nr, nh) in per_word.items()]
    rows.sort(key=lambda row: (-row[2], row[0]))
    lines += [f"{w}   {c} {e} {nr} {nh}" for w, c, e, nr, nh in rows]
    return "\n".join(lines) + "\n"


def _by_count(counter: collections.Counter) -> list:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


@dataclass(frozen=True)
class ErrsHeader:
    """The totals at the top of an errs file. error_rate is percent, 2 decimals."""

    error_rate: float
    ins: int
    dels: int
    subs: int
    ref_len: int
    correct: int

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs


_ERRORS_LINE = re.compile(
    r"Errors: (\d+) insertions, (\d+) deletions, (\d+) substitutions, "
    r"over (\d+) reference words \((\d+) correct\)"
)


def read_errs_header(path: str | os.PathLike) -> ErrsHeader:
    """Parse the ``%WER`` and ``Errors:`` lines of an errs file."""
    text = Path(path).read_text(encoding="utf-8")
    rate = re.search(r"^%WER = (\S+)$", text, re.MULTILINE)
    counts = _ERRORS_LINE.search(text)
    if rate is None or counts is None:
        raise ValueError(f"{path} is not an errs file: no '%WER =' or 'Errors:' line")
    ins, dels, subs, ref_len, correct = map(int, counts.groups())
    return ErrsHeader(float(rate.group(1)), ins, dels, subs, ref_len, correct)


def read_wer_summary(path: str | os.PathLike) -> dict[str, float]:
    """{key: rate} from a wer-summary file (rates in percent)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("settings\t"):
        raise ValueError(f"{path} is not a wer-summary file: no 'settings' header")
    out = {}
    for line in lines[1:]:
        key, rate = line.split("\t")
        out[key] = float(rate)
    return out


def read_recogs(path: str | os.PathLike) -> list[tuple[str, list[str], list[str]]]:
    """(id, ref tokens, hyp tokens) per utterance, sorted by id: the input of ``score``."""
    found: dict[str, dict[str, list[str]]] = collections.defaultdict(dict)
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        m = re.fullmatch(r"(\S+):\t(ref|hyp)=(\[.*\])", line)
        if m is None:
            raise ValueError(f"{path}:{n}: not a '<id>:\\tref=[...]' or hyp line: {line!r}")
        found[m.group(1)][m.group(2)] = ast.literal_eval(m.group(3))
    incomplete = [u for u, sides in found.items() if len(sides) != 2]
    if incomplete:
        raise ValueError(f"{path}: utterances without both ref and hyp lines: {incomplete[:5]}")
    return [(u, found[u]["ref"], found[u]["hyp"]) for u in sorted(found)]


