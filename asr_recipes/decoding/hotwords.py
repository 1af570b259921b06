"""Hotwords files -> phrases with token ids and a per-token bonus
(``[h.option for h in read_hotwords(...)]`` is ``DecodingOptions.hotwords``).

Format (UTF-8 text, as sherpa-onnx's hotwords files), one phrase per line, an optional
per-token score at the end after `` :``; blank lines and lines starting with ``#`` are
skipped::

    ZANZIBAR
    NEW YORK CITY :2.5

A phrase is normalised and encoded by the model's own tokenizer (so it must be written in
the model's alphabet and case). Its score is the bonus added per matched token (natural
log units, like the scores it is added to); without one, the ``score`` argument applies.
Errors name the file and line and say what to change: an unreadable file, a bad score, a
phrase with characters the tokenizer has no token for.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from asr_recipes.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)

#: Default bonus per matched token (sherpa-onnx's default hotwords_score).
DEFAULT_SCORE = 1.5


class HotwordsError(ValueError):
    """A hotwords file that cannot be used; the message names the file (and line)."""


@dataclass(frozen=True)
class Hotword:
    text: str  # the phrase as the tokenizer normalises it
    tokens: tuple[int, ...]
    score: float  # bonus per matched token

    @property
    def option(self) -> tuple[tuple[int, ...], float]:
        """The DecodingOptions.hotwords entry."""
        return self.tokens, self.score


def parse_line(line: str) -> tuple[str, float | None]:
    """``"NEW YORK :2.5"`` -> ``("NEW YORK", 2.5)``; ``"NEW YORK"`` -> ``("NEW YORK", None)``.
    ValueError for a score that is not a finite number >= 0."""
    fields = line.split()
    if fields and fields[-1].startswith(":"):
        text = fields[-1][1:]
        try:
            score = float(text)
        except ValueError:
            raise ValueError(f"score {text!r} is not a number (write e.g. ':2.0')") from None
        if not math.isfinite(score) or score < 0:
            raise ValueError(f"score {text!r} must be a finite number >= 0")
        return " ".join(fields[:-1]), score
    return " ".join(fields), None


def _unspellable(tokenizer: Tokenizer, phrase: str) -> list[str]:
    """Characters of ``phrase`` that the tokenizer maps to <unk>."""
    chars = dict.fromkeys(c for c in phrase if not c.isspace())
    return [c for c in chars if tokenizer.unk_id in tokenizer.encode([c])[0]]


def read_hotwords(path: str | os.PathLike, tokenizer: Tokenizer,
                  score: float = DEFAULT_SCORE) -> list[Hotword]:
    """The phrases of ``path``, in file order."""
    path = Path(path)
    if not math.isfinite(score) or score < 0:
        raise HotwordsError(f"hotwords score must be a finite number >= 0, got {score!r}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise HotwordsError(f"{path}: cannot read the hotwords file ({reason}); give a UTF-8 text file with "
                            "one phrase per line") from None
    phrases = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{lineno}"
        try:
            phrase, own = parse_line(line)
        except ValueError as e:
            raise HotwordsError(f"{where}: {e}") from None
        if not phrase:
            raise HotwordsError(f"{where}: a score without a phrase; write 'PHRASE :score'")
        bad = _unspellable(tokenizer, phrase)
        if bad:
            upper = phrase.upper()
            fix = (f"this model's tokens are upper case: write {upper!r}"
                   if upper != phrase and not _unspellable(tokenizer, upper)
                   else "write the phrase in the model's alphabet or remove the line")
            raise HotwordsError(f"{where}: the model's tokenizer has no token for {''.join(bad)!r} in {phrase!r}; "
                                f"{fix}")
        tokens = tuple(tokenizer.encode([phrase])[0])
        phrases.append(Hotword(tokenizer.normalize(phrase), tokens, score if own is None else own))
    if not phrases:
        raise HotwordsError(f"{path}: no phrases (only blank or '#' lines); write one phrase per line")
    log.info("%s: %d hotword phrases", path, len(phrases))
    return phrases
