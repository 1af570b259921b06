"""Synthesized-speech corpora in the exact LibriSpeech and AISHELL-1 layouts.

Speech comes from espeak-ng (formant synthesis, ~270x faster than real time) piped
through sox, so a full corpus takes well under a minute on two cores and needs no
download. The layouts match the real corpora, so lhotse's ``prepare_librispeech`` /
``prepare_aishell`` read them unchanged and recipes run the same code on both.

- LibriSpeech: ``<out_dir>/LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/
  <chapter>/<spk>-<chapter>-<NNNN>.flac`` plus ``<spk>-<chapter>.trans.txt``.
- AISHELL-1: ``<out_dir>/data_aishell/wav/{train,dev,test}/<spk>/<uttid>.wav`` plus
  ``data_aishell/transcript/aishell_transcript_v0.8.txt`` (space-separated words).

Audio: 16 kHz, mono, 16-bit. Texts come from the seeded grammars in
:mod:`synthetic_text` (dev/test sentences never occur in train); dev/test speakers use
espeak-ng variants never heard in train. Everything is deterministic in ``seed``:
reruns give byte-identical files. A marker file in the corpus root records a
fingerprint of the whole plan (paths, texts, voices, tool versions); a complete corpus
with the same fingerprint is left alone, anything else (a partial run, other options)
is deleted and written again. Every file is written to a temp name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from itertools import product
from pathlib import Path
from typing import Callable, Mapping, Sequence

import soundfile

from asr_recipes.atomic_files import write_atomic
from asr_recipes.constants import SAMPLE_RATE
from asr_recipes.data.corpora.synthetic_text import GRAMMARS, SPLITS, sample_sentences

log = logging.getLogger(__name__)

REQUIRED_TOOLS = ("espeak-ng", "sox")
INSTALL_HINT = "sudo apt-get install espeak-ng sox"
MARKER_NAME = ".synthesis.json"

#: Utterances per split for the named sizes; an int N means N in every split.
SIZES: Mapping[str, Mapping[str, int]] = {
    "tiny": {"train": 8, "dev": 3, "test": 3},
    "full": {"train": 2500, "dev": 200, "test": 200},
}

#: English accents (espeak-ng voices) shared by all splits.
ENGLISH_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
MANDARIN_VOICES = ("cmn-latn-pinyin",)  # plain "cmn" is broken in espeak-ng 1.51

#: espeak-ng voice variants (timbre). Dev/test speakers only use the held-out ones, so
#: they are unseen speakers, not just unseen (accent, speed, pitch) combinations.
#: Left out: novelty voices (robots, whisper, croak) and the fast-talking Andrea and anika.
TRAIN_VARIANTS = {
    "female": ("f1", "f2", "f3", "f4", "Alicia", "Annie", "aunty", "grandma"),
    "male": ("m1", "m2", "m3", "m4", "m5", "m7", "m8", "klatt", "klatt2", "klatt4", "adam",
             "Alex", "Andy", "benjamin", "boris", "david", "edward", "john", "max", "Mike",
             "norbert", "paul", "quincy", "rob", "victor"),
}
HELDOUT_VARIANTS = {
    "female": ("f5", "linda", "belinda", "steph"),
    "male": ("m6", "klatt3", "Michael", "travis"),
}
#: espeak-ng words per minute; Mandarin is slower so 5-syllable sentences last 1.5 s.
SPEED_RANGE = {"english": (140, 180), "mandarin": (130, 165)}
PITCH_RANGE = (30, 70)  # espeak-ng pitch adjustment, 0..99


class SynthesisError(RuntimeError):
    """A corpus cannot be synthesized; the message names the cause and the fix."""


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: espeak-ng ``voice+variant`` at a speed and pitch."""

    speaker_id: str  # "1001" (LibriSpeech) or "S0002" (AISHELL)
    voice: str
    variant: str
    speed: int
    pitch: int


@dataclass(frozen=True)
class Utterance:
    """One planned audio file; ``relpath`` is relative to the corpus root."""

    split: str  # directory name of the split, e.g. "dev-clean"
    utt_id: str
    relpath: str
    text: str  # transcript words
    spoken: str  # what espeak-ng reads (lower case English or tone-numbered pinyin)
    speaker: Speaker


def split_sizes(size: str | int) -> dict[str, int]:
    """Utterances per split for ``size`` ("tiny", "full" or a positive int)."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return {split: size for split in SPLITS}
    if isinstance(size, str) and size in SIZES:
        return dict(SIZES[size])
    raise SynthesisError(f"size={size!r} is not valid; use one of {sorted(SIZES)} or a "
                         "positive number of utterances per split")


def make_speakers(voices: Sequence[str], counts: Mapping[str, int], seed: int,
                  speed_range: tuple[int, int]) -> dict[str, list[Speaker]]:
    """Speakers per split (ids left empty), half female, all (voice, variant) distinct.

    Every split cycles through the accents (voices), so each accent a dev/test speaker has
    is spoken by several training speakers too: test speakers are unseen people, not an
    unseen dialect. Train draws its timbres from TRAIN_VARIANTS; dev and test from
    HELDOUT_VARIANTS without sharing a (voice, variant) pair. Raises SynthesisError if the
    pools are too small.
    """
    rng = random.Random(f"speakers/{seed}")
    pools = {}
    for name, variants in (("train", TRAIN_VARIANTS), ("heldout", HELDOUT_VARIANTS)):
        for gender, names in variants.items():
            pairs = list(product(voices, names))
            rng.shuffle(pairs)
            pools[name, gender] = pairs
    order = list(voices)
    rng.shuffle(order)
    speakers: dict[str, list[Speaker]] = {}
    for split in SPLITS:
        pool = "train" if split == "train" else "heldout"
        chosen = []
        for i in range(counts[split]):
            voice = order[i % len(order)]
            # Alternate genders within an accent as well as across consecutive speakers.
            gender = ("female", "male")[(i % len(order) + i // len(order)) % 2]
            pairs = pools[pool, gender]
            pick = next((k for k, (v, _) in enumerate(pairs) if v == voice), None)
            if pick is None:
                raise SynthesisError(f"not enough espeak-ng voice variants for "
                                     f"{counts[split]} {split} speakers")
            _, variant = pairs.pop(pick)  # popped pairs are gone for the other splits
            chosen.append(Speaker("", voice, variant, rng.randint(*speed_range),
                                  rng.randint(*PITCH_RANGE)))
        speakers[split] = chosen
    return speakers


def to_pinyin(text: str) -> str:
    """Space-separated Chinese words -> tone-numbered pinyin (neutral tone = 5)."""
    from pypinyin import Style, lazy_pinyin  # only the Mandarin corpus needs it

    syllables = []
    for word in text.split():  # per word, so pypinyin's phrase table picks readings
        syllables += lazy_pinyin(word, style=Style.TONE3, neutral_tone_with_five=True)
    return " ".join(syllables)


# --------------------------------------------------------------------------------------
# Plans: which file holds which text, spoken by whom.

_LIBRISPEECH_SPLITS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
_LIBRISPEECH_FIRST_SPEAKER = {"train": 1001, "dev": 2001, "test": 3001}
_LIBRISPEECH_SPEAKERS = {"train": 32, "dev": 8, "test": 8}
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


def plan_librispeech(task: str, size: str | int, seed: int) -> list[Utterance]:
    """The LibriSpeech-layout corpus for an English ``task``, one chapter per speaker."""
    if task not in ("commands", "sentences"):
        raise SynthesisError(f"task={task!r} is not an English task; use commands or sentences")
    counts = split_sizes(size)
    voices = make_speakers(ENGLISH_VOICES, _LIBRISPEECH_SPEAKERS, seed, SPEED_RANGE["english"])
    plan = []
    for split, part in _LIBRISPEECH_SPLITS.items():
        first = _LIBRISPEECH_FIRST_SPEAKER[split]
        speakers = [Speaker(str(first + i), s.voice, s.variant, s.speed, s.pitch)
                    for i, s in enumerate(voices[split])]
        sentences = sample_sentences(GRAMMARS[task], split, counts[split], seed)
        for index, text, spk in _assign(sentences, speakers):
            chapter = int(spk.speaker_id) * 100 + 1
            utt_id = f"{spk.speaker_id}-{chapter}-{index:04d}"
            relpath = f"{part}/{spk.speaker_id}/{chapter}/{utt_id}.flac"
            plan.append(Utterance(part, utt_id, relpath, text, text.lower(), spk))
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
# Tools and rendering.

def _run(cmd: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=stdin, capture_output=True, check=False)


def check_tools(plan: Sequence[Utterance] = ()) -> str:
    """Fail clearly unless espeak-ng, sox and every planned voice/variant exist.

    Returns the tools' version lines (part of the corpus fingerprint). The variant
    check matters: espeak-ng silently falls back to its default for unknown variants.
    """
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise SynthesisError(f"{' and '.join(missing)} not found on PATH; the synthesized "
                             f"corpora need espeak-ng and sox. Install with: {INSTALL_HINT}")
    listing = _run(["espeak-ng", "--voices=variant"]).stdout.decode()
    known = {line.split()[4].split("/", 1)[1] for line in listing.splitlines()[1:]
             if len(line.split()) >= 5}
    languages = _run(["espeak-ng", "--voices"]).stdout.decode().split()
    for spk in {u.speaker for u in plan}:
        if spk.variant not in known or spk.voice not in languages:
            raise SynthesisError(f"this espeak-ng lacks voice {spk.voice}+{spk.variant} "
                                 f"(speaker {spk.speaker_id}); install espeak-ng >= 1.51")
    versions = [_run([tool, "--version"]).stdout.decode().strip() for tool in REQUIRED_TOOLS]
    return "\n".join(versions)


def render(utt: Utterance, root: Path) -> float:
    """Synthesize ``utt`` to ``root / utt.relpath`` atomically; returns its duration (s).

    espeak-ng writes 22.05 kHz WAV to stdout; sox resamples to 16 kHz mono 16-bit
    without dither (-D), so the bytes depend only on the inputs.
    """
    spk = utt.speaker
    dest = root / utt.relpath
    tts = _run(["espeak-ng", "--stdout", "-v", f"{spk.voice}+{spk.variant}",
                "-s", str(spk.speed), "-p", str(spk.pitch), utt.spoken])
    if tts.returncode != 0 or not tts.stdout:
        raise SynthesisError(f"espeak-ng failed on {utt.utt_id} ({utt.spoken!r}): "
                             f"{tts.stderr.decode().strip()}")
    tmp = dest.with_name(dest.name + ".tmp")
    file_type = dest.suffix.lstrip(".")
    conv = _run(["sox", "-D", "-t", "wav", "-", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
                 "-t", file_type, str(tmp)], stdin=tts.stdout)
    if conv.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise SynthesisError(f"sox failed on {utt.utt_id}: {conv.stderr.decode().strip()}")
    os.replace(tmp, dest)
    return soundfile.info(str(dest)).duration


def _log_summary(plan: Sequence[Utterance], durations: Sequence[float]) -> None:
    by_split: dict[str, list[tuple[Utterance, float]]] = {}
    for utt, dur in zip(plan, durations):
        by_split.setdefault(utt.split, []).append((utt, dur))
    for split, items in by_split.items():
        secs = [d for _, d in items]
        log.info("%s: %d utterances, %d speakers, duration min/mean/max %.2f/%.2f/%.2f s, "
                 "total %.1f min", split, len(items), len({u.speaker for u, _ in items}),
                 min(secs), statistics.mean(secs), max(secs), sum(secs) / 60)


# --------------------------------------------------------------------------------------
# Building a corpus.

def _build(root: Path, plan: list[Utterance], managed: Sequence[str],
           transcripts: Callable[[list[Utterance]], dict[str, str]], num_jobs: int) -> Path:
    """Write ``plan`` under ``root`` unless an identical complete corpus is there.

    managed: subdirectories of ``root`` this corpus owns (deleted before a rewrite).
    transcripts: plan -> {path relative to root: file contents}.
    """
    versions = check_tools(plan)
    blob = json.dumps([versions, SAMPLE_RATE, [astuple(u) for u in plan]], ensure_ascii=False)
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

    for directory in sorted({(root / u.relpath).parent for u in plan}):
        directory.mkdir(parents=True, exist_ok=True)
    log.info("synthesizing %d utterances into %s with %d jobs", len(plan), root, num_jobs)
    # Threads suffice: the work happens in the espeak-ng and sox child processes.
    with ThreadPoolExecutor(max_workers=max(1, num_jobs)) as pool:
        durations = list(pool.map(lambda u: render(u, root), plan))
    for relpath, contents in transcripts(plan).items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(root / relpath, contents)
    write_atomic(marker_path, json.dumps({"fingerprint": fingerprint, "complete": True}))
    _log_summary(plan, durations)
    return root


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


def synthesize_librispeech_layout(out_dir: Path, task: str = "commands",
                                  size: str | int = "full", seed: int = 0,
                                  num_jobs: int = 2) -> Path:
    """English corpus in the LibriSpeech layout; returns ``out_dir / "LibriSpeech"``.

    task: "commands" (47 words) or "sentences" (~290 words). size: "tiny" (8/3/3
    utterances), "full" (2500/200/200) or N per split. Idempotent and deterministic.
    """
    plan = plan_librispeech(task, size, seed)
    return _build(Path(out_dir).resolve() / "LibriSpeech", plan,
                  tuple(_LIBRISPEECH_SPLITS.values()), _librispeech_transcripts, num_jobs)


def synthesize_aishell_layout(out_dir: Path, size: str | int = "tiny", seed: int = 0,
                              num_jobs: int = 2, task: str = "mandarin") -> Path:
    """Mandarin corpus in the AISHELL-1 layout; returns ``out_dir / "data_aishell"``.

    lhotse's ``prepare_aishell`` takes ``out_dir`` (the parent of data_aishell/).
    ``task`` exists for symmetry with the LibriSpeech layout; only "mandarin" is valid.
    """
    if task != "mandarin":
        raise SynthesisError(f"the AISHELL layout has only task=mandarin, not {task!r}")
    plan = plan_aishell(size, seed)
    return _build(Path(out_dir).resolve() / "data_aishell", plan, ("wav", "transcript"),
                  _aishell_transcripts, num_jobs)


#: layout name -> (default task, builder called with keyword arguments).
LAYOUTS: Mapping[str, tuple[str, Callable[..., Path]]] = {
    "librispeech": ("commands", synthesize_librispeech_layout),
    "aishell": ("mandarin", synthesize_aishell_layout),
}


def synthesize(layout: str, out_dir: Path, task: str | None = None, size: str | int = "full",
               seed: int = 0, num_jobs: int = 2) -> Path:
    """Build the corpus of ``layout`` ("librispeech" or "aishell"); returns its root.

    task None means the layout's default (commands, resp. mandarin).
    """
    if layout not in LAYOUTS:
        raise SynthesisError(f"layout={layout!r} is unknown; use one of {sorted(LAYOUTS)}")
    default_task, build = LAYOUTS[layout]
    return build(out_dir=out_dir, task=default_task if task is None else task, size=size,
                 seed=seed, num_jobs=num_jobs)
