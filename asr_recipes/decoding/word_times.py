"""Token and word times in seconds from the encoder frames on which a search emitted tokens.

Frames and seconds. Fbank frame i is the 25 ms window of samples [160 i - 120, 160 i + 280)
at 16 kHz, centred on 10 i + 5 ms (asr_recipes.data.online_fbank); so frame i stands for
the 10 ms [10 i, 10 i + 10) ms. The x4 front end makes encoder frame t from fbank frames
4t .. 4t+6: its own 4 frames, [40 t, 40 t + 40) ms, and SUBSAMPLING_LOOKAHEAD = 3 frames
(30 ms) of the next ones. ``frame_time(t)`` = 40 t ms + TOKEN_OFFSET is where we place a
token emitted on frame t: the centre of the audio the front end gave that frame,
(40 t - 7.5 + 40 t + 77.5) / 2 = 40 t + 35 ms, rounded to 40 t + 40 ms = the end of
the frame's own 40 ms (see TOKEN_OFFSET for the measurement behind the rounding).

Words. Start = frame_time(frame of its first token) - HALF_FRAME; end = frame_time(frame
of its last token) + HALF_FRAME: a word occupies at least the 40 ms around its tokens'
frames (the span that frame's own fbank frames cover, shifted by TOKEN_OFFSET). A word's
tokens: for SentencePiece and the char tokenizer with word boundaries, a token spelled
with a leading "▁" starts a new word and "▁" alone belongs to no word (so a word's
times come from its letters only, never from the boundary token); for a character
tokenizer without word boundaries (Chinese) each token is a word. The words are exactly
``tokenizer.decode``'s text split on spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from asr_recipes.constants import FRAME_SHIFT, SUBSAMPLING_FACTOR
from asr_recipes.data.tokenizer import WORD_BOUNDARY, CharTokenizer, Tokenizer

#: seconds per encoder frame (40 ms)
FRAME_SECONDS = SUBSAMPLING_FACTOR * FRAME_SHIFT
HALF_FRAME = FRAME_SECONDS / 2
#: seconds from an encoder frame's start (40 t ms) to where its tokens are placed
TOKEN_OFFSET = FRAME_SECONDS


def frame_time(frame: int) -> float:
    """Seconds (from the start of the audio) of a token emitted on encoder frame ``frame``."""
    return frame * FRAME_SECONDS + TOKEN_OFFSET


@dataclass(frozen=True)
class TimedToken:
    token: str
    frame: int
    time: float  # s

    def to_dict(self) -> dict:
        return {"token": self.token, "frame": self.frame, "time": round(self.time, 3)}


@dataclass(frozen=True)
class TimedWord:
    word: str
    start: float  # s
    end: float  # s

    def to_dict(self) -> dict:
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3)}


def each_token_is_a_word(tokenizer: Tokenizer) -> bool:
    """True for a character tokenizer without word boundaries (Chinese)."""
    return isinstance(tokenizer, CharTokenizer) and not tokenizer.word_boundary


def token_times(tokenizer: Tokenizer, tokens: Sequence[int], frames: Sequence[int]) -> list[TimedToken]:
    if len(tokens) != len(frames):
        raise ValueError(f"{len(tokens)} tokens but {len(frames)} timestamps")
    return [TimedToken(tokenizer.id_to_token(k), f, frame_time(f)) for k, f in zip(tokens, frames)]


def group_words(pieces: Sequence[str], frames: Sequence[int], per_token: bool) -> list[tuple[str, int, int]]:
    """(word, frame of its first token, frame of its last token) per word, in order."""
    words: list[list] = []
    new_word = True
    for piece, frame in zip(pieces, frames):
        if per_token:
            words.append([piece, frame, frame])
            continue
        if piece.startswith(WORD_BOUNDARY):
            new_word = True
        text = piece.lstrip(WORD_BOUNDARY)
        if not text:
            continue
        if new_word:
            words.append([text, frame, frame])
            new_word = False
        else:
            words[-1][0] += text
            words[-1][2] = frame
    return [tuple(w) for w in words]


def word_times(tokenizer: Tokenizer, tokens: Sequence[int], frames: Sequence[int]) -> list[TimedWord]:
    """Words of a hypothesis (token ids and their encoder frames) with start/end seconds."""
    if len(tokens) != len(frames):
        raise ValueError(f"{len(tokens)} tokens but {len(frames)} timestamps")
    pieces = [tokenizer.id_to_token(k) for k in tokens]
    return [TimedWord(word, max(frame_time(first) - HALF_FRAME, 0.0), frame_time(last) + HALF_FRAME)
            for word, first, last in group_words(pieces, frames, each_token_is_a_word(tokenizer))]
