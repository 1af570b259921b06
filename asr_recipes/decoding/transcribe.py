"""Transcribe audio files with a self-describing checkpoint.

audio file (WAV/FLAC/..., any sample rate, any channels) -> lhotse Recording, resampled to
SAMPLE_RATE and mixed to mono -> fbank_extractor() (the extractor of the fbank stage,
checked against the checkpoint's feature_config) -> encoder -> search -> text.
Resampling and feature extraction go through the same lhotse calls as the fbank stage,
so a file gets the features its cut would get in training (minus lilcom's rounding).

Streaming (causal models): transcribe_streaming feeds a file's samples piece by piece, as
live audio would arrive, through OnlineFbank (the same frames) and a StreamingRecognizer.

``result_record`` is what ``bin.transcribe --timestamps`` / ``--nbest`` print per file: a JSON
object with the text, word and token times (asr_recipes.decoding.word_times) and the n-best list.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import soundfile
import torch
from lhotse import Recording

from asr_recipes.constants import FRAME_SHIFT, SAMPLE_RATE
from asr_recipes.data.features import AUDIO_ERRORS, fbank_extractor, feature_config
from asr_recipes.data.online_fbank import OnlineFbank
from asr_recipes.decoding.options import DecodingResult
from asr_recipes.decoding.runner import nbest_fields
from asr_recipes.decoding.search import SearchStrategy
from asr_recipes.decoding.word_times import token_times, word_times

log = logging.getLogger(__name__)


class AudioError(Exception):
    """A file that cannot be transcribed; the message names the file and the reason."""


def check_feature_config(ckpt: dict) -> None:
    """Raise if the checkpoint's model was trained on other features than fbank_extractor()'s."""
    trained, here = ckpt.get("feature_config"), feature_config()
    if trained is not None and trained != here:
        raise ValueError(f"the checkpoint's model was trained on features {trained}, but this version computes "
                         f"{here}; transcribe with the asr-recipes version that trained it")


def load_audio(path: str | Path, min_frames: int) -> np.ndarray:
    """(1, S) float32 samples of one audio file at SAMPLE_RATE, mixed to mono; AudioError
    naming the file if it is unusable or gives fewer than ``min_frames`` feature frames (the
    model's encoder.min_input_frames(): one encoder frame)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        soundfile.info(str(path))  # short, specific message for non-audio files
        recording = Recording.from_file(path)
        if recording.sampling_rate != SAMPLE_RATE:
            recording = recording.resample(SAMPLE_RATE)
        samples = recording.load_audio()  # (C, S) float32
    except (*AUDIO_ERRORS, RuntimeError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AudioError(f"{path}: cannot read audio ({reason})") from None
    if samples.shape[0] > 1:
        samples = samples.mean(axis=0, keepdims=True)  # (1, S): mono, like a one-channel cut
    hop = round(FRAME_SHIFT * SAMPLE_RATE)
    if (samples.shape[1] + hop // 2) // hop < min_frames:  # fbank frames
        raise AudioError(f"{path}: too short ({samples.shape[1] / SAMPLE_RATE:.3f} s); the model needs at least "
                         f"{min_frames * FRAME_SHIFT:.2f} s of audio")
    return samples


def load_features(path: str | Path, min_frames: int) -> torch.Tensor:
    """(T, F) float32 fbank of one audio file; AudioError naming the file if unusable (load_audio)."""
    return torch.from_numpy(fbank_extractor().extract(load_audio(path, min_frames), SAMPLE_RATE))  # (T, F)


def transcribe_files(model, tokenizer, search: SearchStrategy, paths: Sequence[str | Path],
                     device: torch.device, batch_size: int = 8,
                     chunk: tuple[int, int] = ()) -> Iterator[tuple[str, DecodingResult | None, str | None]]:
    """Yields (path, result, None) or (path, None, error message) per path, in input order.
    Readable files are decoded in batches of up to ``batch_size``; ``chunk`` =
    (chunk_size, left_context) runs a streaming model with its chunk mask."""
    for start in range(0, len(paths), batch_size):
        group = [str(p) for p in paths[start : start + batch_size]]
        features, errors = {}, {}
        for p in group:
            try:
                features[p] = load_features(p, model.encoder.min_input_frames())
            except AudioError as e:
                errors[p] = str(e)
        results = dict(zip(features, _decode(model, search, list(features.values()), device, chunk)))
        for p in group:
            yield (p, results[p], None) if p in results else (p, None, errors[p])


@torch.inference_mode()
def _decode(model, search: SearchStrategy, features: list[torch.Tensor], device,
            chunk: tuple[int, int] = ()) -> list[DecodingResult]:
    """Results for a list of (T_n, F) feature matrices."""
    if not features:
        return []
    lens = torch.tensor([f.size(0) for f in features])  # (N,)
    # The encoder masks padding (models/encoder.py's contract), so the pad value is irrelevant.
    padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)  # (N, T, F)
    encoder_out, encoder_lens = model.encode(padded.to(device), lens.to(device), *chunk)  # (N, T', D), (N,)
    return search.search(encoder_out, encoder_lens)


def result_record(path: str, result: DecodingResult, tokenizer, timestamps: bool = True,
                  nbest: int | None = None, *, lookahead_frames: int) -> dict:
    """{"file", "text"} plus, with ``timestamps``, "words" [{"word", "start", "end"}] and
    "tokens" [{"token", "frame", "time"}] (seconds from the start of the file; from the CTC
    alignment's token spans when the result has them, else the search's frames; word ends
    with the model's encoder.lookahead_frames, asr_recipes.decoding.word_times), and with
    ``nbest``, "nbest": the best ``nbest`` hypotheses, best first, each with the fields of an
    n-best file (asr_recipes.decoding.runner.NBEST_HEADER, where the scores are described)."""
    record = {"file": path, "text": tokenizer.decode([result.tokens])[0]}
    if timestamps:
        spans = result.token_spans  # CTC-aligned (first, last) frames, when the model has a CTC head
        words = word_times(tokenizer, result.tokens, result.timestamps, spans, lookahead_frames=lookahead_frames)
        record["words"] = [w.to_dict() for w in words]
        frames = [first for first, _ in spans] if spans else result.timestamps
        record["tokens"] = [t.to_dict() for t in token_times(tokenizer, result.tokens, frames)]
    if nbest:
        hyps = result.hyps[:nbest]
        record["nbest"] = [nbest_fields(h, text) for h, text in zip(hyps, tokenizer.decode([h.tokens for h in hyps]))]
    return record


@dataclass
class StreamReport:
    """How one file went through the streaming path."""

    text: str
    audio_seconds: float
    #: wall seconds spent on each audio piece (fbank + encoder chunks + search)
    piece_seconds: list[float]
    result: DecodingResult | None = None

    def summary(self, piece_ms: float) -> str:
        mean = 1000 * sum(self.piece_seconds) / max(len(self.piece_seconds), 1)
        worst = 1000 * max(self.piece_seconds, default=0.0)
        rtf = sum(self.piece_seconds) / self.audio_seconds if self.audio_seconds else float("nan")
        return (f"{len(self.piece_seconds)} pieces of {piece_ms:g} ms: compute per piece mean {mean:.1f} ms, "
                f"max {worst:.1f} ms, RTF {rtf:.3f}")


def transcribe_streaming(recognizer, tokenizer, samples: np.ndarray, piece_ms: float, realtime: bool = False,
                         on_partial: Callable[[str], None] | None = None) -> StreamReport:
    """Feed (1, S) samples to a StreamingRecognizer ``piece_ms`` at a time, as live audio
    would arrive (``realtime``: paced at real time), decoding every chunk as soon as it is
    complete; ``on_partial(text)`` gets the transcript each time it changes."""
    fbank = OnlineFbank()
    stream = recognizer.new_stream()
    piece = max(1, round(piece_ms / 1000 * SAMPLE_RATE))
    audio = samples.reshape(-1)
    times, shown = [], ""
    started = time.perf_counter()
    for k, begin in enumerate(range(0, audio.size, piece)):
        if realtime:  # this piece has been "spoken" only once its last sample is due
            due = started + min(begin + piece, audio.size) / SAMPLE_RATE
            time.sleep(max(0.0, due - time.perf_counter()))
        t0 = time.perf_counter()
        fbank.accept_waveform(audio[begin : begin + piece])
        last = begin + piece >= audio.size
        if last:
            fbank.input_finished()
        recognizer.accept_features(stream, fbank.frames())
        if last:
            recognizer.input_finished(stream)
        while recognizer.is_ready(stream):
            recognizer.decode([stream])
        times.append(time.perf_counter() - t0)
        text = tokenizer.decode([recognizer.result(stream).tokens])[0]
        if on_partial is not None and text != shown:
            on_partial(text)
        shown = text
    result = recognizer.result(stream)
    return StreamReport(tokenizer.decode([result.tokens])[0], audio.size / SAMPLE_RATE, times, result)
