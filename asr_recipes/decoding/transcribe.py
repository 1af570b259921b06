"""Transcribe audio files with a self-describing checkpoint.

audio file (WAV/FLAC/..., any sample rate, any channels) -> lhotse Recording, resampled to
SAMPLE_RATE and mixed to mono -> fbank_extractor() (the extractor of the fbank stage,
checked against the checkpoint's feature_config) -> encoder -> search -> text.
Resampling and feature extraction go through the same lhotse calls as the fbank stage,
so a file gets the features its cut would get in training (minus lilcom's rounding).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Sequence

import soundfile
import torch
from lhotse import Recording

from asr_recipes.constants import SAMPLE_RATE, frames_after_subsampling
from asr_recipes.data.features import AUDIO_ERRORS, fbank_extractor, feature_config
from asr_recipes.decoding.search import SearchStrategy

log = logging.getLogger(__name__)


class AudioError(Exception):
    """A file that cannot be transcribed; the message names the file and the reason."""


def check_feature_config(ckpt: dict) -> None:
    """Raise if the checkpoint's model was trained on other features than fbank_extractor()'s."""
    trained, here = ckpt.get("feature_config"), feature_config()
    if trained is not None and trained != here:
        raise ValueError(f"the checkpoint's model was trained on features {trained}, but this version computes "
                         f"{here}; transcribe with the asr-recipes version that trained it")


def load_features(path: str | Path) -> torch.Tensor:
    """(T, F) float32 fbank of one audio file; AudioError naming the file if unusable."""
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
    features = torch.from_numpy(fbank_extractor().extract(samples, SAMPLE_RATE))  # (T, F)
    if frames_after_subsampling(features.size(0)) < 1:
        raise AudioError(f"{path}: too short ({samples.shape[1] / SAMPLE_RATE:.3f} s); the model needs at least "
                         "0.1 s of audio")
    return features


def transcribe_files(model, tokenizer, search: SearchStrategy, paths: Sequence[str | Path],
                     device: torch.device, batch_size: int = 8) -> Iterator[tuple[str, str | None, str | None]]:
    """Yields (path, text, None) or (path, None, error message) per path, in input order.
    Readable files are decoded in batches of up to ``batch_size``."""
    for start in range(0, len(paths), batch_size):
        chunk = [str(p) for p in paths[start : start + batch_size]]
        features, errors = {}, {}
        for p in chunk:
            try:
                features[p] = load_features(p)
            except AudioError as e:
                errors[p] = str(e)
        texts = dict(zip(features, _decode(model, tokenizer, search, list(features.values()), device)))
        for p in chunk:
            yield (p, texts[p], None) if p in texts else (p, None, errors[p])


@torch.inference_mode()
def _decode(model, tokenizer, search: SearchStrategy, features: list[torch.Tensor], device) -> list[str]:
    """Texts for a list of (T_n, F) feature matrices."""
    if not features:
        return []
    lens = torch.tensor([f.size(0) for f in features])  # (N,)
    # The encoder masks padding (asr_recipes.models.conformer), so the pad value is irrelevant.
    padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)  # (N, T, F)
    encoder_out, encoder_lens = model.encode(padded.to(device), lens.to(device))  # (N, T', D), (N,)
    return tokenizer.decode([r.tokens for r in search.search(encoder_out, encoder_lens)])
