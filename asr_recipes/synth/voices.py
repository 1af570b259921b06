"""Speech engines and voices of the synthesized corpora: espeak-ng and flite.

Two engines that sound nothing alike, so a model trained on both has to learn speech
rather than one synthesizer:

- espeak-ng: formant synthesis, many accents (``voice``) and timbres (``variant``), speed
  in words per minute and pitch 0..99 set by espeak-ng itself.
- flite: CMU voices built from recordings of real people (kal16 diphones; awb, rms, slt
  clustergen). One voice is one person, so "speakers" of a voice differ by a sox ``tempo``
  factor and ``pitch`` shift applied after synthesis and, in training, by the mean F0 that
  flite's own intonation model aims at (``f0``).

Every engine writes WAV to stdout; sox turns it into 16 kHz mono 16-bit audio without
dither (``-D``), so the bytes depend only on the inputs (byte-identical reruns).
"""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import soundfile

from asr_recipes.constants import SAMPLE_RATE

ESPEAK = "espeak-ng"
FLITE = "flite"
ENGINES = (ESPEAK, FLITE)
#: Command that installs every tool the synthesized corpora need.
INSTALL_HINT = "sudo apt-get install espeak-ng flite sox"

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

#: flite voices (16 kHz, English). awb is Scottish-accented, rms and kal16 US male, slt US female.
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
#: sox tempo factor (percent, pitch kept) and pitch shift (cents, tempo kept) per flite speaker.
FLITE_TEMPO_RANGE = (85, 115)
FLITE_PITCH_RANGE = (-250, 250)
#: Mean F0 (Hz) flite's intonation targets for training speakers (``int_f0_target_mean``).
#: sox ``pitch`` moves F0 and formants together (it resamples the whole spectrum); people
#: differ in both independently, so training speakers also get their own intonation mean.
FLITE_F0_RANGE = (85, 190)
#: Voices whose intonation takes that target: rms's output is the same whatever the value
#: (flite 2.2), so its speakers keep f0 = 0 rather than a value that does nothing.
FLITE_F0_VOICES = ("kal16", "awb", "slt")


class SynthesisError(RuntimeError):
    """A corpus cannot be synthesized; the message names the cause and the fix."""


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker.

    espeak-ng: ``voice+variant`` (e.g. en-us+m3) at ``speed`` words per minute and espeak-ng
    ``pitch`` 0..99. flite: ``voice`` (e.g. slt), ``variant`` empty, ``speed`` = sox tempo in
    percent (100 = as synthesized), ``pitch`` = sox pitch shift in cents and ``f0`` = the mean
    F0 in Hz flite's intonation aims at before that shift (0: the voice's own).
    """

    speaker_id: str  # "1001" (LibriSpeech) or "S0002" (AISHELL)
    voice: str
    variant: str
    speed: int
    pitch: int
    engine: str = ESPEAK
    f0: int = 0


def make_speakers(voices: Sequence[str], counts: Mapping[str, int], seed: int,
                  speed_range: tuple[int, int]) -> dict[str, list[Speaker]]:
    """espeak-ng speakers per split (ids left empty), half female, all (voice, variant) distinct.

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
    for split, count in counts.items():
        pool = "train" if split == "train" else "heldout"
        chosen = []
        for i in range(count):
            voice = order[i % len(order)]
            # Alternate genders within an accent as well as across consecutive speakers.
            gender = ("female", "male")[(i % len(order) + i // len(order)) % 2]
            pairs = pools[pool, gender]
            pick = next((k for k, (v, _) in enumerate(pairs) if v == voice), None)
            if pick is None:
                raise SynthesisError(f"not enough espeak-ng voice variants for {count} {split} speakers")
            _, variant = pairs.pop(pick)  # popped pairs are gone for the other splits
            chosen.append(Speaker("", voice, variant, rng.randint(*speed_range), rng.randint(*PITCH_RANGE)))
        speakers[split] = chosen
    return speakers


def make_flite_speakers(voice: str, counts: Mapping[str, int], seed: int) -> dict[str, list[Speaker]]:
    """``counts[split]`` flite speakers of one ``voice`` per split (ids left empty), each with
    its own (tempo, pitch) pair: no pair repeats across splits, so a dev/test speaker of a
    seen voice is still a new tempo and pitch. Training speakers also get their own
    intonation mean ``f0`` from FLITE_F0_RANGE, drawn from a separate generator so the
    (tempo, pitch) pairs, and every dev/test speaker, do not depend on it; dev/test speakers
    keep the voice's own intonation. Deterministic in (voice, seed) alone, so adding or
    removing other voices leaves this voice's speakers unchanged."""
    if voice not in FLITE_VOICES:
        raise SynthesisError(f"unknown flite voice {voice!r}; use one of {list(FLITE_VOICES)}")
    rng = random.Random(f"flite/{seed}/{voice}")
    f0_rng = random.Random(f"flite-f0/{seed}/{voice}")
    used: set[tuple[int, int]] = set()
    speakers: dict[str, list[Speaker]] = {}
    for split, count in counts.items():
        chosen = []
        while len(chosen) < count:
            pair = (rng.randint(*FLITE_TEMPO_RANGE), 10 * rng.randint(FLITE_PITCH_RANGE[0] // 10,
                                                                      FLITE_PITCH_RANGE[1] // 10))
            if pair not in used:
                used.add(pair)
                f0 = f0_rng.randint(*FLITE_F0_RANGE) if split == "train" and voice in FLITE_F0_VOICES else 0
                chosen.append(Speaker("", voice, "", pair[0], pair[1], engine=FLITE, f0=f0))
        speakers[split] = chosen
    return speakers


def _run(cmd: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=stdin, capture_output=True, check=False)


def _espeak_voices() -> tuple[set[str], set[str]]:
    """(languages, variants) this espeak-ng has."""
    listing = _run([ESPEAK, "--voices=variant"]).stdout.decode()
    variants = {line.split()[4].split("/", 1)[1] for line in listing.splitlines()[1:]
                if len(line.split()) >= 5}
    languages = set(_run([ESPEAK, "--voices"]).stdout.decode().split())
    return languages, variants


def _flite_voices() -> set[str]:
    # "Voices available: kal awb_time kal16 awb rms slt"
    return set(_run([FLITE, "-lv"]).stdout.decode().split(":", 1)[-1].split())


def check_tools(speakers: Iterable[Speaker]) -> str:
    """Fail clearly unless sox and every planned engine and voice exist.

    Returns the tools' version lines (part of the corpus fingerprint). The voice check
    matters: espeak-ng falls back to its default for an unknown variant, flite to kal.
    """
    speakers = list(speakers)
    engines = sorted({s.engine for s in speakers} | {ESPEAK})
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        raise SynthesisError(f"unknown speech engine(s) {unknown}; use {list(ENGINES)}")
    tools = [*engines, "sox"]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise SynthesisError(f"{' and '.join(missing)} not found on PATH; the synthesized corpora "
                             f"need {', '.join(tools)}. Install with: {INSTALL_HINT}")
    languages, variants = _espeak_voices()
    flite = _flite_voices() if FLITE in engines else set()
    for spk in sorted(set(speakers), key=lambda s: s.speaker_id):
        if spk.engine == ESPEAK and (spk.variant not in variants or spk.voice not in languages):
            raise SynthesisError(f"this espeak-ng lacks voice {spk.voice}+{spk.variant} "
                                 f"(speaker {spk.speaker_id}); install espeak-ng >= 1.51")
        if spk.engine == FLITE and spk.voice not in flite:
            raise SynthesisError(f"this flite lacks voice {spk.voice!r} (speaker {spk.speaker_id}; "
                                 f"it has {sorted(flite)}); install flite >= 2.1: {INSTALL_HINT}")
    version_args = {ESPEAK: ["--version"], FLITE: ["--version"], "sox": ["--version"]}
    return "\n".join(_run([tool, *version_args[tool]]).stdout.decode().strip() for tool in tools)


def synthesize_wav(speaker: Speaker, spoken: str) -> bytes:
    """The engine's WAV output (any rate) for ``spoken`` by ``speaker``; raises SynthesisError."""
    if speaker.engine == ESPEAK:
        cmd = [ESPEAK, "--stdout", "-v", f"{speaker.voice}+{speaker.variant}", "-s", str(speaker.speed),
               "-p", str(speaker.pitch), spoken]
    elif speaker.engine == FLITE:
        f0 = ["--setf", f"int_f0_target_mean={speaker.f0}"] if speaker.f0 else []
        cmd = [FLITE, "-voice", speaker.voice, *f0, "-t", spoken, "-o", "/dev/stdout"]
    else:
        raise SynthesisError(f"speaker {speaker.speaker_id}: unknown engine {speaker.engine!r}")
    tts = _run(cmd)
    if tts.returncode != 0 or len(tts.stdout) <= 44:  # 44 bytes: a WAV header without samples
        raise SynthesisError(f"{speaker.engine} failed for speaker {speaker.speaker_id} on {spoken!r}: "
                             f"{tts.stderr.decode().strip()}")
    return tts.stdout


def sox_effects(speaker: Speaker) -> list[str]:
    """sox effects that turn the engine output into this speaker (flite: tempo, pitch)."""
    if speaker.engine != FLITE:
        return []
    effects = []
    if speaker.pitch:
        effects += ["pitch", str(speaker.pitch)]
    if speaker.speed != 100:
        effects += ["tempo", "-s", f"{speaker.speed / 100:.2f}"]  # -s: tuned for speech
    return effects


def render_samples(speaker: Speaker, spoken: str) -> np.ndarray:
    """(S,) float32 samples at SAMPLE_RATE of ``speaker`` saying ``spoken`` (what render_audio
    writes, kept in memory); raises SynthesisError."""
    conv = _run(["sox", "-D", "-t", "wav", "-", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-t", "wav", "-",
                 *sox_effects(speaker)], stdin=synthesize_wav(speaker, spoken))
    if conv.returncode != 0:
        raise SynthesisError(f"sox failed for speaker {speaker.speaker_id} on {spoken!r}: "
                             f"{conv.stderr.decode().strip()}")
    samples, _ = soundfile.read(io.BytesIO(conv.stdout), dtype="float32")
    return samples


def render_audio(speaker: Speaker, spoken: str, dest: Path, pad: tuple[float, float] = (0.0, 0.0)) -> float:
    """Synthesize ``spoken`` to ``dest`` (format from its suffix) atomically; returns seconds.

    pad: seconds of silence added before and after what the engine produced.
    """
    wav = synthesize_wav(speaker, spoken)
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp{dest.suffix}")
    padding = ["pad", f"{pad[0]:.3f}", f"{pad[1]:.3f}"] if any(pad) else []
    conv = _run(["sox", "-D", "-t", "wav", "-", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(tmp),
                 *sox_effects(speaker), *padding], stdin=wav)
    if conv.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise SynthesisError(f"sox failed for speaker {speaker.speaker_id} on {spoken!r}: "
                             f"{conv.stderr.decode().strip()}")
    os.replace(tmp, dest)
    return soundfile.info(str(dest)).duration
