"""Token and word times in seconds from the encoder frames on which a search emitted tokens.

Frames and seconds. Fbank frame i is the 25 ms window of samples [160 i - 120, 160 i + 280)
at 16 kHz, centred on 10 i + 5 ms (asr_recipes.data.online_fbank), so it stands for the
10 ms [10 i, 10 i + 10) ms. The encoder's x4 front end computes encoder frame t from fbank
frames 4t .. 4t + 3 + L, where L is the encoder's look-ahead (Encoder.lookahead_frames:
the Conformer's 3, the Zipformer's 13): its own 40 ms [40 t, 40 t + 40) ms and 10 L ms more,
[40 t, 40 t + 40 + 10 L) ms in all (Conformer: + 70 ms, Zipformer: + 170 ms).

    token time  = 40 t ms                      (the start of its frame; the same numbers as
                                                sherpa-onnx's and icefall's token timestamps)
    word start  = 40 t_first ms                (t_first: frame of the word's first token)
    word end    = 40 t_last + 40 + 10 L ms     (t_last: frame of its last token; the end of
                                                the audio the front end gave that frame)

so a word spans the audio the front end fed to the frames its tokens were emitted on. With a
CTC head, t_first / t_last are instead the first frame of the word's first token's run and
the last frame of its last token's run in the CTC forced alignment (token spans,
asr_recipes.decoding.ctc_align; DecodingOptions.timestamps). The
end is where the search's next decision after the word's last token falls (the blank that
closes frame t_last) plus the look-ahead that frame read. What these times cannot know:
a transducer emits a word's last letters as soon as it has recognised the word, often
before the word is over, so word ends tend to be early (measured in egs/mini/RESULTS.md,
"Word timestamps").

Words: for SentencePiece and the char tokenizer with word boundaries, a token spelled with
a leading "▁" starts a new word, and "▁" alone belongs to no word (a word's times come from
its letters only, never from the boundary token, which the mini model emits together with
the next word's first letter); for a character tokenizer without word boundaries (Chinese)
each token is a word. The words are exactly ``tokenizer.decode``'s text split on spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from asr_recipes.constants import FRAME_SHIFT, SUBSAMPLING_FACTOR
from asr_recipes.data.tokenizer import WORD_BOUNDARY, CharTokenizer, Tokenizer

#: seconds per encoder frame (40 ms)
FRAME_SECONDS = SUBSAMPLING_FACTOR * FRAME_SHIFT


def frame_time(frame: int) -> float:
    """Seconds from the start of the audio to the start of encoder frame ``frame``."""
    return frame * FRAME_SECONDS


def frame_end_time(frame: int, lookahead_frames: int) -> float:
    """Seconds from the start of the audio to the end of the audio the front end gave encoder
    frame ``frame``: its own 40 ms plus ``lookahead_frames`` (Encoder.lookahead_frames) of 10 ms."""
    return frame_time(frame) + FRAME_SECONDS + lookahead_frames * FRAME_SHIFT


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


def word_times(tokenizer: Tokenizer, tokens: Sequence[int], frames: Sequence[int],
               spans: Sequence[tuple[int, int]] = (), *, lookahead_frames: int) -> list[TimedWord]:
    """Words of a hypothesis (token ids and their encoder frames) with start/end seconds.

    ``lookahead_frames``: the model's encoder.lookahead_frames (a word ends 40 ms + 10 ms per
    look-ahead frame after the start of its last frame). ``spans``: (first, last) frame of each
    token in a CTC forced alignment (asr_recipes.decoding.ctc_align; Hypothesis.token_spans).
    When given, a word starts at the first frame of its first token's run and ends after the
    last frame of its last token's run (the same rule), instead of at the emission frames."""
    if len(tokens) != len(frames):
        raise ValueError(f"{len(tokens)} tokens but {len(frames)} timestamps")
    if spans and len(spans) != len(tokens):
        raise ValueError(f"{len(tokens)} tokens but {len(spans)} token spans")
    pieces = [tokenizer.id_to_token(k) for k in tokens]
    per_token = each_token_is_a_word(tokenizer)
    if spans:
        starts = group_words(pieces, [a for a, _ in spans], per_token)
        ends = group_words(pieces, [b for _, b in spans], per_token)
        words = [(word, first, last) for (word, first, _), (_, _, last) in zip(starts, ends)]
    else:
        words = group_words(pieces, frames, per_token)
    return [TimedWord(word, frame_time(first), frame_end_time(last, lookahead_frames)) for word, first, last in words]
