"""Generated noise for the synthesized corpora: no download, deterministic in the seed.

Two uses:

- a training noise corpus in the MUSAN layout (``<out_dir>/musan/noise/synthetic/*.wav`` and
  ``<out_dir>/musan/speech/synthetic/*.wav``), so the MUSAN code path (prepare, fbank in
  10 s windows, lhotse ``CutMix`` in the data pipeline) mixes it into training batches;
- the noisy test part: every test utterance plus noise from a separate pool (other random
  draws of the same families, never in the training noise) at a fixed SNR.

Families (all float64 arrays at ``SAMPLE_RATE``, unit RMS):

- ``white``, ``pink``, ``brown``: Gaussian noise with a 1/f^0, 1/f^1, 1/f^2 power spectrum;
- ``band``: white noise band-passed to a random band (fans, engines, traffic);
- ``hum``: mains hum, 50 or 60 Hz and its harmonics, over a little pink noise;
- ``babble``: 4-7 synthesized talkers (seen training voices reading ``sentences``-grammar
  texts, so no command words) summed with random offsets and gains.

The stationary families get a slow random loudness envelope, so noise comes and goes.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

from asr_recipes.atomic_files import write_atomic_with
from asr_recipes.constants import SAMPLE_RATE
from asr_recipes.synth.text import GRAMMARS, sample_sentences
from asr_recipes.synth.voices import Speaker, render_audio

#: Families of generated noise, in the order files and pools cycle through them.
NOISE_FAMILIES = ("white", "pink", "brown", "band", "hum")
BABBLE = "babble"
#: Talkers per babble signal.
BABBLE_TALKERS = (4, 7)
#: Seconds per generated noise signal.
NOISE_SECONDS = 8.0
#: Signals per family ("train": files of the MUSAN-layout corpus; "test": the noisy part's pool).
PER_FAMILY = {"train": 4, "test": 2}
BABBLE_SIGNALS = {"train": 8, "test": 4}
#: RMS level of the written noise files (the mixing rescales them to an SNR anyway).
FILE_RMS = 0.1


def rng_for(*key) -> np.random.Generator:
    """A generator seeded by a tuple of ints and strings (stable across runs and machines)."""
    digest = hashlib.sha256("/".join(map(str, key)).encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(x ** 2))), 1e-12)


def _shaped(rng: np.random.Generator, n: int, gain) -> np.ndarray:
    """White Gaussian noise of n samples filtered by gain(frequencies in Hz) (amplitude)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    return _unit_rms(np.fft.irfft(spectrum * gain(freqs), n))


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown), below 20 Hz flat."""
    return _shaped(rng, n, lambda f: np.maximum(f, 20.0) ** (-exponent / 2))


def band_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """White noise through a smooth band-pass, centre 150 Hz - 4 kHz, 0.5-2 octaves wide."""
    centre = float(np.exp(rng.uniform(np.log(150.0), np.log(4000.0))))
    octaves = rng.uniform(0.5, 2.0)
    return _shaped(rng, n, lambda f: np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / centre) / (octaves / 2)) ** 2))


def hum(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mains hum: 50 or 60 Hz (+-1%) and harmonics up to ~1 kHz, plus pink noise 25 dB down."""
    f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.99, 1.01)
    t = np.arange(n) / SAMPLE_RATE
    x = np.zeros(n)
    for k in range(1, int(1000 // f0) + 1):
        x += rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    return _unit_rms(_unit_rms(x) + 10 ** (-25 / 20) * colored_noise(rng, n, 1.0))


def envelope(rng: np.random.Generator, n: int) -> np.ndarray:
    """A slow loudness curve between ~0.3 and 1 (three sines of 0.1-1 Hz)."""
    t = np.arange(n) / SAMPLE_RATE
    e = sum(np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * t + rng.uniform(0, 2 * np.pi)) for _ in range(3))
    return 0.65 + 0.35 * e / 3


def stationary_noise(family: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """n samples (unit RMS) of one of NOISE_FAMILIES, with a slow loudness envelope."""
    if family in ("white", "pink", "brown"):
        x = colored_noise(rng, n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[family])
    elif family == "band":
        x = band_noise(rng, n)
    elif family == "hum":
        x = hum(rng, n)
    else:
        raise ValueError(f"unknown noise family {family!r}; use one of {NOISE_FAMILIES}")
    return _unit_rms(x * envelope(rng, n))


def babble(rng: np.random.Generator, n: int, talkers: list[np.ndarray]) -> np.ndarray:
    """n samples (unit RMS) of several talkers at once: each one looped from a random
    offset, at a random gain within 6 dB."""
    x = np.zeros(n)
    for speech in talkers:
        speech = _unit_rms(speech)
        start = int(rng.integers(len(speech)))
        reps = -(-(n + start) // len(speech))
        x += 10 ** (rng.uniform(-6, 0) / 20) * np.tile(speech, reps)[start:start + n]
    return _unit_rms(x)


def snr_db(speech: np.ndarray, noise: np.ndarray) -> float:
    """10 log10(speech power / noise power) over the whole signals."""
    return float(10 * np.log10(np.sum(speech.astype(np.float64) ** 2) / np.sum(noise.astype(np.float64) ** 2)))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr: float, rng: np.random.Generator) -> np.ndarray:
    """speech + noise scaled to ``snr`` dB over the utterance (noise taken from a random
    offset, looped if shorter); the sum is scaled down as a whole if it would clip."""
    n = len(speech)
    start = int(rng.integers(len(noise)))
    reps = -(-(n + start) // len(noise))
    segment = np.tile(noise, reps)[start:start + n]
    scale = np.sqrt(np.sum(speech ** 2) / (np.sum(segment ** 2) * 10 ** (snr / 10)))
    mixed = speech + scale * segment
    peak = float(np.max(np.abs(mixed)))
    return mixed * (0.99 / peak) if peak > 0.99 else mixed


def write_audio(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM file (WAV or FLAC, from the suffix), written atomically."""
    fmt = Path(path).suffix.lstrip(".").upper()
    write_atomic_with(path, lambda f: soundfile.write(f, samples, rate, format=fmt, subtype="PCM_16"))


def babble_talkers(seed: int, name: str, index: int, talkers: Sequence[Speaker]) -> list[tuple[Speaker, str]]:
    """(speaker, text) of each talker of babble signal ``index`` of pool ``name``: 4-7
    distinct speakers, texts from the ``sentences`` grammar (no command words)."""
    rng = rng_for(seed, name, BABBLE, index)
    count = min(len(talkers), int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1)))
    chosen = [talkers[int(k)] for k in rng.choice(len(talkers), size=count, replace=False)]
    texts = sample_sentences(GRAMMARS["sentences"], "train", count, seed=int(rng.integers(2 ** 31)))
    return list(zip(chosen, texts))


def signal_names(name: str) -> list[str]:
    """Names of the signals of pool ``name``, e.g. ``pink-02``, ``babble-00``."""
    return [f"{family}-{k:02d}" for family in NOISE_FAMILIES for k in range(PER_FAMILY[name])] + [
        f"{BABBLE}-{k:02d}" for k in range(BABBLE_SIGNALS[name])]


def pool(seed: int, name: str, talkers: Sequence[Speaker], tmp_parent: Path) -> dict[str, np.ndarray]:
    """The noise signals of pool ``name`` ("train" or "test"): {signal name: unit-RMS samples}.

    Talkers of the babble are synthesized into a temporary directory under ``tmp_parent``.
    Pools differ in their random draws, so test noise is never a training noise signal.
    """
    if not talkers:
        raise ValueError("babble needs at least one talker")
    n = int(NOISE_SECONDS * SAMPLE_RATE)
    signals = {}
    Path(tmp_parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_parent, prefix=".talkers-") as tmp:
        for signal in signal_names(name):
            family, k = signal.rsplit("-", 1)
            rng = rng_for(seed, name, family, k)
            if family != BABBLE:
                signals[signal] = stationary_noise(family, rng, n)
                continue
            speech = []
            for i, (speaker, text) in enumerate(babble_talkers(seed, name, int(k), talkers)):
                path = Path(tmp) / f"{signal}-{i}.wav"
                render_audio(speaker, text.lower(), path)
                speech.append(soundfile.read(str(path), dtype="float64")[0])
            signals[signal] = babble(rng, n, speech)
    return signals


def fingerprint(seed: int, talkers: Sequence[Speaker]) -> list:
    """What the generated noise depends on besides the tools (for corpus fingerprints)."""
    return [seed, np.__version__, NOISE_SECONDS, PER_FAMILY, BABBLE_SIGNALS, BABBLE_TALKERS, FILE_RMS,
            [[t.speaker_id, t.voice, t.variant, t.speed, t.pitch, t.engine] for t in talkers]]
