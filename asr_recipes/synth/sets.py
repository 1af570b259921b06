"""Small synthesized evaluation sets whose ground truth no model produced (word timing,
hotword biasing), ready to decode.

Speech comes from espeak-ng + sox with the speakers of asr_recipes.synth.corpus
(``make_speakers``: train speakers, or the held-out voices of dev/test). A set is one named
part written under ``out_dir``::

    audio/<part>/<utt_id>.wav                                  16 kHz mono 16-bit
    manifests/<corpus>_{recordings,supervisions}_<part>.jsonl.gz  lhotse manifests
    fbank/<corpus>_cuts_<part>.jsonl.gz                        cuts with fbank (the fbank stage's code)

so ``bin.decode data.manifest_dir=<out_dir>/fbank data.test_parts=[<part>]`` decodes it and
``bin.transcribe`` takes the audio files. ``corpus`` defaults to "librispeech", the name the
mini recipe's data config reads. A part is rebuilt only when its plan changed (a
fingerprint in ``<out_dir>/<part>.done.json``, written last).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.supervision import AlignmentItem

from asr_recipes.atomic_files import write_atomic, write_atomic_with
from asr_recipes.constants import SAMPLE_RATE
from asr_recipes.data.features import compute_fbank
from asr_recipes.data.manifests import manifest_path, write_atomically
from asr_recipes.synth.voices import (
    ENGLISH_VOICES, SPEED_RANGE, Speaker, SynthesisError, check_tools, make_speakers, render_samples,
)

#: a word's speech is where |sample| exceeds this fraction of its peak (-40 dB)
TRIM_THRESHOLD = 0.01


def speakers(kind: str, count: int, seed: int) -> list[Speaker]:
    """``count`` English speakers: "train" (the synthetic corpus' training voices) or
    "heldout" (voices no training speaker has, as its dev/test)."""
    split = {"train": "train", "heldout": "test"}[kind]
    counts = {"train": count if split == "train" else 1, "dev": 1, "test": count if split == "test" else 1}
    chosen = make_speakers(ENGLISH_VOICES, counts, seed, SPEED_RANGE["english"])[split]
    return [Speaker(f"{9000 + i}", s.voice, s.variant, s.speed, s.pitch) for i, s in enumerate(chosen)]


def speak(text: str, speaker: Speaker) -> np.ndarray:
    """(S,) float32 samples at SAMPLE_RATE of ``speaker`` reading ``text`` (lower-cased, as
    the synthetic corpus speaks it)."""
    return render_samples(speaker, text.lower())


def trim(samples: np.ndarray) -> np.ndarray:
    """The span from the first to the last sample above TRIM_THRESHOLD of the peak."""
    loud = np.flatnonzero(np.abs(samples) > TRIM_THRESHOLD * np.abs(samples).max())
    if loud.size == 0:
        raise SynthesisError("espeak-ng produced silence")
    return samples[loud[0] : loud[-1] + 1]


@dataclass(frozen=True)
class Item:
    """One utterance of a set; ``words``: optional ground-truth (word, start s, end s)."""

    utt_id: str
    text: str
    speaker_id: str
    audio: np.ndarray = field(repr=False, compare=False)
    words: tuple[tuple[str, float, float], ...] = ()


def write_set(out_dir: str | Path, part: str, plan: object, make_items: Callable[[], Sequence[Item]],
              corpus: str = "librispeech") -> Path:
    """Build ``part`` under ``out_dir`` (layout in the module docstring) unless it is there
    with the same ``plan`` (any JSON-able description of what make_items() makes).
    Returns the cuts manifest. Word times go into the supervisions' ``alignment["word"]``."""
    out_dir = Path(out_dir).absolute()
    check_tools([])  # espeak-ng and sox (the sets speak with espeak-ng only)
    fingerprint = hashlib.sha256(json.dumps([plan, corpus, SAMPLE_RATE], sort_keys=True).encode()).hexdigest()
    marker = out_dir / f"{part}.done.json"
    cuts = manifest_path(out_dir / "fbank", corpus, "cuts", part)
    if marker.is_file() and json.loads(marker.read_text()).get("fingerprint") == fingerprint and cuts.is_file():
        return cuts
    marker.unlink(missing_ok=True)
    audio_dir = out_dir / "audio" / part
    for stale in (audio_dir, out_dir / "fbank" / f"{corpus}_feats_{part}"):
        shutil.rmtree(stale, ignore_errors=True)
    cuts.unlink(missing_ok=True)
    audio_dir.mkdir(parents=True)
    recordings, supervisions = [], []
    for item in make_items():
        path = audio_dir / f"{item.utt_id}.wav"
        write_atomic_with(path, lambda f, a=item.audio: soundfile.write(f, a, SAMPLE_RATE, subtype="PCM_16",
                                                                         format="WAV"))
        rec = Recording.from_file(path, recording_id=item.utt_id)
        recordings.append(rec)
        alignment = {"word": [AlignmentItem(w, round(s, 4), round(e - s, 4)) for w, s, e in item.words]}
        supervisions.append(SupervisionSegment(item.utt_id, item.utt_id, 0.0, rec.duration, channel=0,
                                               text=item.text, speaker=item.speaker_id, language="English",
                                               alignment=alignment if item.words else None))
    manifests = out_dir / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    write_atomically(RecordingSet.from_recordings(recordings), manifest_path(manifests, corpus, "recordings", part))
    write_atomically(SupervisionSet.from_segments(supervisions), manifest_path(manifests, corpus, "supervisions", part))
    compute_fbank(manifests, corpus, [part], out_dir / "fbank", train_parts=[p for p in [part] if "train" in p])
    write_atomic(marker, json.dumps({"fingerprint": fingerprint, "utterances": len(recordings)}) + "\n")
    return cuts
