"""Test helpers: tiny corpora of tones + noise in the real corpora's directory layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def tone(duration: float, seed: int, sr: int = SR) -> np.ndarray:
    """A sine tone plus a little noise, float32 in [-1, 1], ``round(duration * sr)`` samples."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(duration * sr))) / sr
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + 0.02 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def write_librispeech(dl_dir: Path, parts: dict[str, list[float]], speakers: int = 2) -> dict[str, dict]:
    """Write ``<dl_dir>/LibriSpeech/<part>/<spk>/<chapter>/*.flac`` + ``.trans.txt``.

    ``parts`` maps part name -> utterance durations (s), spread over ``speakers``.
    Returns ``{part: {utt_id: {"path": Path, "text": str, "duration": float}}}``.
    """
    out = {}
    seed = 0
    for part, durations in parts.items():
        utts = {}
        by_chapter: dict[Path, list[str]] = {}
        for i, duration in enumerate(durations):
            spk, chapter = 100 + i % speakers, 7
            utt_id = f"{spk}-{chapter}-{i:04d}"
            chapter_dir = dl_dir / "LibriSpeech" / part / str(spk) / str(chapter)
            chapter_dir.mkdir(parents=True, exist_ok=True)
            path = chapter_dir / f"{utt_id}.flac"
            sf.write(path, tone(duration, seed), SR, subtype="PCM_16")
            seed += 1
            text = f"UTTERANCE NUMBER {i} OF {part.upper()}"
            utts[utt_id] = {"path": path, "text": text, "duration": duration}
            by_chapter.setdefault(chapter_dir, []).append(f"{utt_id} {text}")
        for chapter_dir, lines in by_chapter.items():
            spk, chapter = chapter_dir.parent.name, chapter_dir.name
            (chapter_dir / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
        out[part] = utts
    return out


def write_aishell(dl_dir: Path, per_split: int = 2) -> dict[str, dict]:
    """Write ``<dl_dir>/aishell/data_aishell/wav/{train,dev,test}/<spk>/<utt>.wav`` + transcript.

    Transcripts are space-separated words, as in AISHELL-1.
    Returns ``{split: {utt_id: {"path": Path, "text": str}}}`` (text as in the file).
    """
    root = dl_dir / "aishell" / "data_aishell"
    words = ["而", "对", "楼市", "成交", "抑制", "作用", "最", "大", "的"]
    out, lines, seed = {}, [], 0
    for split, spk in (("train", "S0002"), ("dev", "S0724"), ("test", "S0764")):
        utts = {}
        for i in range(per_split):
            utt_id = f"BAC009{spk}W{i + 121:04d}"
            path = root / "wav" / split / spk / f"{utt_id}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(1.0 + 0.25 * i, seed), SR, subtype="PCM_16")
            seed += 1
            text = " ".join(words[(seed + k) % len(words)] for k in range(4))
            utts[utt_id] = {"path": path, "text": text}
            lines.append(f"{utt_id} {text}")
        out[split] = utts
    transcript = root / "transcript" / "aishell_transcript_v0.8.txt"
    transcript.parent.mkdir(parents=True, exist_ok=True)
    transcript.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def write_musan(dl_dir: Path, durations: dict[str, list[float]]) -> dict[str, list[Path]]:
    """Write ``<dl_dir>/musan/<part>/<source>/*.wav`` (plus music ANNOTATIONS)."""
    out, seed = {}, 100
    for part, part_durations in durations.items():
        paths = []
        for i, duration in enumerate(part_durations):
            path = dl_dir / "musan" / part / "src" / f"{part}-{i:04d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(duration, seed), SR, subtype="PCM_16")
            seed += 1
            paths.append(path)
        if part == "music":
            (dl_dir / "musan" / part / "src" / "ANNOTATIONS").write_text(
                "".join(f"{p.stem} pop N someone\n" for p in paths)
            )
        out[part] = paths
    return out


def truncate(path: Path, keep: float = 0.4) -> None:
    """Cut a file to its first ``keep`` fraction of bytes (a broken download)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
