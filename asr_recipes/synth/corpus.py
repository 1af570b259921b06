"""Synthesized-speech corpora in the exact LibriSpeech and AISHELL-1 layouts.

Speech comes from two engines (:mod:`voices`): espeak-ng (formant synthesis) and
flite (voices built from recordings of real people), piped through sox; no download. The
layouts match the real corpora, so lhotse's ``prepare_librispeech`` / ``prepare_aishell``
read them unchanged and recipes run the same code on both.

- LibriSpeech: ``<out_dir>/LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac``
  plus ``<spk>-<chapter>.trans.txt``. Parts:

  ==================  =====================================================================
  train-clean-100     espeak-ng training timbres + the seen flite voices (kal16, rms, slt)
  dev-clean           seen voices: held-out espeak-ng timbres, seen flite voices at new
  test-clean            tempo/pitch pairs
  dev-unseen          a flite voice (awb) that no training or -clean speaker has
  test-unseen           (same sentences as dev-clean / test-clean)
  test-other          test-clean plus generated noise at ``noisy_snr`` dB (same speakers,
                        texts and order, speaker ids +3000)
  ==================  =====================================================================

  plus, with ``noise_corpus``, generated training noise in the MUSAN layout under
  ``<out_dir>/musan`` (:mod:`noise`).
- AISHELL-1: ``<out_dir>/data_aishell/wav/{train,dev,test}/<spk>/<uttid>.wav`` plus
  ``data_aishell/transcript/aishell_transcript_v0.8.txt`` (espeak-ng Mandarin only).

Audio: 16 kHz, mono, 16-bit. Texts come from the seeded grammars in :mod:`text`
(dev/test sentences never occur in train). Everything is deterministic in ``seed``: reruns
give byte-identical files. A marker file in each corpus root records a fingerprint of the
whole plan (paths, texts, voices, tool versions); a complete corpus with the same
fingerprint is left alone, anything else (a partial run, other options) is deleted and
written again. Every file is written to a temp name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from asr_recipes.atomic_files import write_atomic
from asr_recipes.constants import SAMPLE_RATE
from asr_recipes.synth import noise
from asr_recipes.synth.text import GRAMMARS, SPLITS, sample_sentences
from asr_recipes.synth.voices import (  # noqa: F401  (Speaker, SynthesisError: public API)
    ENGLISH_VOICES, MANDARIN_VOICES, SPEED_RANGE, Speaker, SynthesisError, check_tools, make_flite_speakers,
    make_speakers, render_audio)

log = logging.getLogger(__name__)

MARKER_NAME = ".synthesis.json"

#: Utterances per split for the named sizes; an int N means N in every split.
SIZES: Mapping[str, Mapping[str, int]] = {
    "tiny": {"train": 8, "dev": 3, "test": 3},
    # 3000 training utterances (x3 speed copies: ~940 steps of 30 s per epoch): twice the
    # utterances of the first demo, in the same training time: dev-unseen 4.5 -> 3.3% WER,
    # test-other 1.3 -> 1.0% (one run each, egs/mini/RESULTS.md, issue 14). dev/test files do not
    # depend on the training size.
    "full": {"train": 3000, "dev": 200, "test": 200},
}
#: flite voices of the training speakers (also in dev-clean / test-clean) ...
SEEN_FLITE_VOICES = ("kal16", "rms", "slt")
#: ... and the one kept for dev-unseen / test-unseen.
HELDOUT_FLITE_VOICE = "awb"
#: SNR (dB) of test-other.
NOISY_SNR = 10.0
#: Seconds of silence added (lead, trail) around every LibriSpeech-layout utterance, drawn per
#: utterance from these ranges. Recordings start and end with pauses of varying length; the
#: engines' own margins are short and fixed (espeak-ng starts within 0.06 s, flite stops 0.05-0.1 s
#: after the last word), which taught the demo model to emit a first letter on frame 0 whatever
#: it heard and to squeeze a last word into two frames (first/last-word errors on flite voices).
SILENCE_MARGINS = ((0.0, 0.3), (0.1, 0.3))


@dataclass(frozen=True)
class Utterance:
    """One planned audio file; ``relpath`` is relative to the corpus root."""

    split: str  # directory name of the split, e.g. "dev-clean"
    utt_id: str
    relpath: str
    text: str  # transcript words
    spoken: str  # what the engine reads (lower case English or tone-numbered pinyin)
    speaker: Speaker
    mix_from: str = ""  # noisy copies: relpath of the clean utterance, mixed with noise at ...
    snr: float | None = None  # ... this SNR (dB)
    pad: tuple[float, float] = (0.0, 0.0)  # seconds of silence added before / after the speech


def split_sizes(size: str | int) -> dict[str, int]:
    """Utterances per split for ``size`` ("tiny", "full" or a positive int)."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return {split: size for split in SPLITS}
    if isinstance(size, str) and size in SIZES:
        return dict(SIZES[size])
    raise SynthesisError(f"size={size!r} is not valid; use one of {sorted(SIZES)} or a "
                         "positive number of utterances per split")


def to_pinyin(text: str) -> str:
    """Space-separated Chinese words -> tone-numbered pinyin (neutral tone = 5)."""
    from pypinyin import Style, lazy_pinyin  # only the Mandarin corpus needs it

    syllables = []
    for word in text.split():  # per word, so pypinyin's phrase table picks readings
        syllables += lazy_pinyin(word, style=Style.TONE3, neutral_tone_with_five=True)
    return " ".join(syllables)


# --------------------------------------------------------------------------------------
# Plans: which file holds which text, spoken by whom.

#: part -> (sentence split, first speaker id). Speaker ids tell the parts apart.
_LIBRISPEECH_PARTS = {
    "train-clean-100": ("train", 1001), "dev-clean": ("dev", 2001), "test-clean": ("test", 3001),
    "dev-unseen": ("dev", 4001), "test-unseen": ("test", 5001),
}
NOISY_PART, NOISY_OF, NOISY_ID_OFFSET = "test-other", "test-clean", 3000
_ESPEAK_SPEAKERS = {"train": 32, "dev": 8, "test": 8}
#: flite speakers (tempo/pitch pairs) per seen voice and split, and of the held-out voice.
#: 12 per seen voice: flite (recorded people) is about half of the training utterances; with 6
#: (a third) the unseen voice's test WER was 3.9% instead of 3.4% (egs/mini/RESULTS.md).
_FLITE_SPEAKERS = {"train": 12, "dev": 2, "test": 2}
_HELDOUT_SPEAKERS = {"dev": 8, "test": 8}
_AISHELL_FIRST_SPEAKER = {"train": 2, "dev": 724, "test": 764}  # as in AISHELL-1
_AISHELL_SPEAKERS = {"train": 16, "dev": 4, "test": 4}


def _assign(sentences: list[str], speakers: list[Speaker]) -> list[tuple[int, str, Speaker]]:
    """Round-robin sentences over speakers: (index within the speaker, text, speaker)."""
    done: dict[str, int] = {}
    out = []
    for k, text in enumerate(sentences):
        speaker = speakers[k % len(speakers)]
        index = done.get(speaker.speaker_id, 0)
        done[speaker.speaker_id] = index + 1
        out.append((index, text, speaker))
    return out


def librispeech_speakers(seed: int, flite_voices: Sequence[str] = SEEN_FLITE_VOICES,
                         heldout_voice: str | None = HELDOUT_FLITE_VOICE) -> dict[str, list[Speaker]]:
    """Speakers (with ids) of every LibriSpeech-layout speech part except the noisy copy.

    Within a part, the engines' speakers are interleaved in a seeded order, so even a tiny
    corpus hears both engines.
    """
    if heldout_voice is not None and heldout_voice in flite_voices:
        raise SynthesisError(f"heldout_voice={heldout_voice!r} is also in flite_voices; the held-out "
                             "voice must not be heard in training")
    espeak = make_speakers(ENGLISH_VOICES, _ESPEAK_SPEAKERS, seed, SPEED_RANGE["english"])
    flite = [make_flite_speakers(v, _FLITE_SPEAKERS, seed) for v in flite_voices]
    heldout = make_flite_speakers(heldout_voice, _HELDOUT_SPEAKERS, seed) if heldout_voice else None
    out = {}
    for part, (split, first) in _LIBRISPEECH_PARTS.items():
        if part.endswith("-unseen"):
            if heldout is None:
                continue
            voices = list(heldout[split])
        else:
            voices = espeak[split] + [s for f in flite for s in f[split]]
            random.Random(f"order/{seed}/{part}").shuffle(voices)
        out[part] = [replace(s, speaker_id=str(first + i)) for i, s in enumerate(voices)]
    return out


def silence_margins(seed: int, utt_id: str) -> tuple[float, float]:
    """(lead, trail) seconds of silence for one utterance, from SILENCE_MARGINS, seeded by
    (seed, utterance id) alone, in whole milliseconds."""
    rng = random.Random(f"margins/{seed}/{utt_id}")
    return tuple(round(rng.uniform(*bounds), 3) for bounds in SILENCE_MARGINS)


def plan_librispeech(task: str, size: str | int, seed: int, flite_voices: Sequence[str] = SEEN_FLITE_VOICES,
                     heldout_voice: str | None = HELDOUT_FLITE_VOICE,
                     noisy_snr: float | None = NOISY_SNR, margins: bool = True) -> list[Utterance]:
    """The LibriSpeech-layout corpus for an English ``task``, one chapter per speaker.

    flite_voices: seen flite voices ([] = espeak-ng only); heldout_voice: the flite voice of
    dev-unseen / test-unseen (None = no such parts); noisy_snr: SNR of test-other (None = none);
    margins: add random silence before and after each utterance (:func:`silence_margins`;
    test-other inherits its clean utterance's).
    """
    if task not in ("commands", "sentences"):
        raise SynthesisError(f"task={task!r} is not an English task; use commands or sentences")
    counts = split_sizes(size)
    plan = []
    for part, speakers in librispeech_speakers(seed, flite_voices, heldout_voice).items():
        split = _LIBRISPEECH_PARTS[part][0]
        sentences = sample_sentences(GRAMMARS[task], split, counts[split], seed)
        for index, text, spk in _assign(sentences, speakers):
            chapter = int(spk.speaker_id) * 100 + 1
            utt_id = f"{spk.speaker_id}-{chapter}-{index:04d}"
            relpath = f"{part}/{spk.speaker_id}/{chapter}/{utt_id}.flac"
            pad = silence_margins(seed, utt_id) if margins else (0.0, 0.0)
            plan.append(Utterance(part, utt_id, relpath, text, text.lower(), spk, pad=pad))
    if noisy_snr is not None:
        for utt in [u for u in plan if u.split == NOISY_OF]:
            spk = utt.speaker
            noisy = replace(spk, speaker_id=str(int(spk.speaker_id) + NOISY_ID_OFFSET))
            chapter = int(noisy.speaker_id) * 100 + 1
            utt_id = f"{noisy.speaker_id}-{chapter}-{utt.utt_id.rsplit('-', 1)[1]}"
            relpath = f"{NOISY_PART}/{noisy.speaker_id}/{chapter}/{utt_id}.flac"
            plan.append(Utterance(NOISY_PART, utt_id, relpath, utt.text, utt.spoken, noisy,
                                  mix_from=utt.relpath, snr=float(noisy_snr)))
    return plan


def plan_aishell(size: str | int, seed: int) -> list[Utterance]:
    """The AISHELL-1-layout Mandarin corpus (ids like ``BAC009S0002W0001``)."""
    counts = split_sizes(size)
    voices = make_speakers(MANDARIN_VOICES, _AISHELL_SPEAKERS, seed, SPEED_RANGE["mandarin"])
    plan = []
    for split in SPLITS:
        first = _AISHELL_FIRST_SPEAKER[split]
        speakers = [Speaker(f"S{first + i:04d}", s.voice, s.variant, s.speed, s.pitch)
                    for i, s in enumerate(voices[split])]
        sentences = sample_sentences(GRAMMARS["mandarin"], split, counts[split], seed)
        for index, text, spk in _assign(sentences, speakers):
            utt_id = f"BAC009{spk.speaker_id}W{index + 1:04d}"
            relpath = f"wav/{split}/{spk.speaker_id}/{utt_id}.wav"
            plan.append(Utterance(split, utt_id, relpath, text, to_pinyin(text), spk))
    return plan


# --------------------------------------------------------------------------------------
# Rendering.

def render(utt: Utterance, root: Path) -> float:
    """Synthesize ``utt`` to ``root / utt.relpath`` atomically; returns its duration (s)."""
    return render_audio(utt.speaker, utt.spoken, root / utt.relpath, utt.pad)


def _render_noisy(utts: Sequence[Utterance], root: Path, pool: list[np.ndarray], seed: int,
                  num_jobs: int) -> list[float]:
    """Write each noisy utterance: its clean file plus a pool signal at its SNR."""
    import soundfile

    def one(utt: Utterance) -> float:
        speech, rate = soundfile.read(str(root / utt.mix_from), dtype="float64")
        rng = noise.rng_for(seed, "mix", utt.utt_id)
        mixed = noise.mix_at_snr(speech, pool[int(rng.integers(len(pool)))], utt.snr, rng)
        noise.write_audio(root / utt.relpath, mixed, rate)
        return len(mixed) / rate

    with ThreadPoolExecutor(max_workers=max(1, num_jobs)) as ex:
        return list(ex.map(one, utts))


def _log_summary(plan: Sequence[Utterance], durations: Sequence[float]) -> None:
    by_split: dict[str, list[tuple[Utterance, float]]] = {}
    for utt, dur in zip(plan, durations):
        by_split.setdefault(utt.split, []).append((utt, dur))
    for split, items in by_split.items():
        secs = [d for _, d in items]
        engines = sorted({u.speaker.engine for u, _ in items})
        log.info("%s: %d utterances, %d speakers (%s), duration min/mean/max %.2f/%.2f/%.2f s, "
                 "total %.1f min", split, len(items), len({u.speaker for u, _ in items}), "+".join(engines),
                 min(secs), statistics.mean(secs), max(secs), sum(secs) / 60)


# --------------------------------------------------------------------------------------
# Building a corpus.

def build_once(root: Path, fingerprint_of: object, managed: Sequence[str], write: Callable[[Path], None]) -> Path:
    """Run ``write(root)`` unless ``root`` holds a complete corpus with the same fingerprint.

    fingerprint_of: JSON-able description of everything the files depend on.
    managed: subdirectories of ``root`` this corpus owns (deleted before a rewrite).
    """
    blob = json.dumps(fingerprint_of, ensure_ascii=False)
    fingerprint = hashlib.sha256(blob.encode("utf-8")).hexdigest()
    marker_path = root / MARKER_NAME
    marker = None
    if marker_path.is_file():
        try:
            marker = json.loads(marker_path.read_text())
        except ValueError:
            marker = {}  # ours, but unreadable: treat as a partial run
    if marker == {"fingerprint": fingerprint, "complete": True}:
        log.info("%s is complete (same options); nothing to do", root)
        return root
    if marker is None and any((root / d).exists() for d in managed):
        raise SynthesisError(f"{root} holds data not written by synthesize (no {MARKER_NAME}); "
                             "choose another out_dir or delete it")
    for d in managed:  # a partial run or other options: start over
        shutil.rmtree(root / d, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(marker_path, json.dumps({"fingerprint": fingerprint, "complete": False}))
    write(root)
    write_atomic(marker_path, json.dumps({"fingerprint": fingerprint, "complete": True}))
    return root


def babble_speakers(seed: int) -> list[Speaker]:
    """Talkers of the generated babble: the espeak-ng training speakers (the same whatever
    flite voices a corpus has, so every variant of a corpus gets the same noise)."""
    espeak = make_speakers(ENGLISH_VOICES, _ESPEAK_SPEAKERS, seed, SPEED_RANGE["english"])["train"]
    return [Speaker(f"babble{i}", s.voice, s.variant, s.speed, s.pitch) for i, s in enumerate(espeak)]


def _build(root: Path, plan: list[Utterance], managed: Sequence[str],
           transcripts: Callable[[list[Utterance]], dict[str, str]], num_jobs: int, seed: int,
           tool_versions: str) -> Path:
    """Write ``plan`` (clean utterances, then noisy copies) and its transcripts under ``root``."""
    clean = [u for u in plan if not u.mix_from]
    noisy = [u for u in plan if u.mix_from]
    fingerprint_of = [tool_versions, SAMPLE_RATE, [astuple(u) for u in plan]]
    if noisy:
        fingerprint_of.append(noise.fingerprint(seed, babble_speakers(seed)))

    def write(root: Path) -> None:
        for directory in sorted({(root / u.relpath).parent for u in plan}):
            directory.mkdir(parents=True, exist_ok=True)
        log.info("synthesizing %d utterances into %s with %d jobs", len(plan), root, num_jobs)
        # Threads suffice: the work happens in the engine and sox child processes.
        with ThreadPoolExecutor(max_workers=max(1, num_jobs)) as pool:
            durations = list(pool.map(lambda u: render(u, root), clean))
        if noisy:
            signals = list(noise.pool(seed, "test", babble_speakers(seed), root).values())
            durations += _render_noisy(noisy, root, signals, seed, num_jobs)
        for relpath, contents in transcripts(plan).items():
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(root / relpath, contents)
        _log_summary(clean + noisy, durations)

    return build_once(root, fingerprint_of, managed, write)


def write_musan_layout(root: Path, seed: int, tool_versions: str) -> Path:
    """The generated training noise as a MUSAN-layout corpus at ``root`` (= <dl_dir>/musan):
    ``noise/synthetic/<family>-<k>.wav`` and ``speech/synthetic/babble-<k>.wav``
    (lhotse's prepare_musan reads it; recording ids are the file names)."""
    talkers = babble_speakers(seed)

    def write(root: Path) -> None:
        signals = noise.pool(seed, "train", talkers, root)
        for name, samples in signals.items():
            part = "speech" if name.startswith(noise.BABBLE) else "noise"
            path = root / part / "synthetic" / f"{name}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            noise.write_audio(path, noise.FILE_RMS * samples)
        log.info("wrote %d generated noise signals (%.0f s each) to %s", len(signals), noise.NOISE_SECONDS, root)

    check_tools(talkers)
    return build_once(root, [tool_versions, SAMPLE_RATE, noise.fingerprint(seed, talkers)], ("noise", "speech"),
                      write)


def _librispeech_transcripts(plan: list[Utterance]) -> dict[str, str]:
    lines: dict[str, list[str]] = {}
    for utt in plan:
        chapter_dir = Path(utt.relpath).parent
        name = f"{chapter_dir.parent.name}-{chapter_dir.name}.trans.txt"
        lines.setdefault(str(chapter_dir / name), []).append(f"{utt.utt_id} {utt.text}\n")
    return {path: "".join(sorted(rows)) for path, rows in lines.items()}


def _aishell_transcripts(plan: list[Utterance]) -> dict[str, str]:
    rows = sorted(f"{utt.utt_id} {utt.text}\n" for utt in plan)
    return {"transcript/aishell_transcript_v0.8.txt": "".join(rows)}


def synthesize_librispeech_layout(out_dir: Path, task: str = "commands", size: str | int = "full",
                                  seed: int = 0, num_jobs: int = 2,
                                  flite_voices: Sequence[str] = SEEN_FLITE_VOICES,
                                  heldout_voice: str | None = HELDOUT_FLITE_VOICE,
                                  noisy_snr: float | None = NOISY_SNR,
                                  noise_corpus: bool = True, margins: bool = True) -> Path:
    """English corpus in the LibriSpeech layout; returns ``out_dir / "LibriSpeech"``.

    task: "commands" (47 words) or "sentences" (~290 words). size: "tiny" (8/3/3
    utterances per split), "full" (3000/200/200) or N per split. flite_voices /
    heldout_voice / noisy_snr / margins: see :func:`plan_librispeech`. noise_corpus: also write the
    generated training noise to ``out_dir / "musan"``. Idempotent and deterministic.
    """
    plan = plan_librispeech(task, size, seed, tuple(flite_voices), heldout_voice, noisy_snr, margins)
    versions = check_tools(u.speaker for u in plan)
    root = _build(Path(out_dir).resolve() / "LibriSpeech", plan, [*_LIBRISPEECH_PARTS, NOISY_PART],
                  _librispeech_transcripts, num_jobs, seed, versions)
    if noise_corpus:
        write_musan_layout(Path(out_dir).resolve() / "musan", seed, versions)
    return root


def synthesize_aishell_layout(out_dir: Path, size: str | int = "tiny", seed: int = 0,
                              num_jobs: int = 2, task: str = "mandarin") -> Path:
    """Mandarin corpus in the AISHELL-1 layout; returns ``out_dir / "data_aishell"``.

    lhotse's ``prepare_aishell`` takes ``out_dir`` (the parent of data_aishell/).
    ``task`` exists for symmetry with the LibriSpeech layout; only "mandarin" is valid.
    """
    if task != "mandarin":
        raise SynthesisError(f"the AISHELL layout has only task=mandarin, not {task!r}")
    plan = plan_aishell(size, seed)
    versions = check_tools(u.speaker for u in plan)
    return _build(Path(out_dir).resolve() / "data_aishell", plan, ("wav", "transcript"),
                  _aishell_transcripts, num_jobs, seed, versions)


#: layout name -> (default task, builder called with keyword arguments).
LAYOUTS: Mapping[str, tuple[str, Callable[..., Path]]] = {
    "librispeech": ("commands", synthesize_librispeech_layout),
    "aishell": ("mandarin", synthesize_aishell_layout),
}


def synthesize(layout: str, out_dir: Path, task: str | None = None, size: str | int = "full",
               seed: int = 0, num_jobs: int = 2, **options) -> Path:
    """Build the corpus of ``layout`` ("librispeech" or "aishell"); returns its root.

    task None means the layout's default (commands, resp. mandarin). ``options`` go to the
    LibriSpeech builder (flite_voices, heldout_voice, noisy_snr, noise_corpus, margins); the AISHELL
    layout has none.
    """
    if layout not in LAYOUTS:
        raise SynthesisError(f"layout={layout!r} is unknown; use one of {sorted(LAYOUTS)}")
    default_task, build = LAYOUTS[layout]
    if options and layout != "librispeech":
        raise SynthesisError(f"options {sorted(options)} only apply to layout=librispeech")
    return build(out_dir=out_dir, task=default_task if task is None else task, size=size,
                 seed=seed, num_jobs=num_jobs, **options)
