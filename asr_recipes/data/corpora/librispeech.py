"""LibriSpeech (openslr.org/12): download and manifest preparation via lhotse.

Expected layout (what the openslr tarballs unpack to)::

    <dl_dir>/LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <dl_dir>/LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

and the language-model text (openslr.org/11), which a recipe's LM stage trains on::

    <dl_dir>/lm/librispeech-lm-norm.txt.gz
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from lhotse.audio.utils import AudioLoadingError
from lhotse.recipes.librispeech import download_librispeech, prepare_librispeech
from lhotse.utils import resumable_download

from asr_recipes.data.corpora import CorpusLayoutError, check_parts
from asr_recipes.data.manifests import manifest_path, prepare_once

log = logging.getLogger(__name__)

NAME = "librispeech"
DEFAULT_PARTS = ("train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other")
TRAIN_PARTS = ("train-clean-100", "train-clean-360", "train-other-500", "train-clean-5")
#: Threads reading audio headers during preparation (I/O bound, so more than the cores).
PREPARE_THREADS = 4
#: Parts only the synthesized corpus in this layout has (asr_recipes.synth.corpus):
#: a voice that no training speaker has.
SYNTHESIZED_PARTS = ("dev-unseen", "test-unseen")
#: Every part name lhotse knows (full and mini LibriSpeech), plus the synthesized corpus' own.
KNOWN_PARTS = (
    "train-clean-100", "train-clean-360", "train-other-500",
    "dev-clean", "dev-other", "test-clean", "test-other",
    "train-clean-5", "dev-clean-2",
) + SYNTHESIZED_PARTS

#: The LibriSpeech LM corpus: ~40M normalised sentences (upper case, no punctuation) of the Project
#: Gutenberg books LibriSpeech was read from, minus those of its dev and test chapters; 1.4 GB.
LM_TEXT_URL = "http://www.openslr.org/resources/11/librispeech-lm-norm.txt.gz"
LM_TEXT = Path("lm") / "librispeech-lm-norm.txt.gz"


def _check_parts(parts: Sequence[str]) -> list[str]:
    return check_parts("LibriSpeech", parts, KNOWN_PARTS)


def download(dl_dir: str | Path, parts: Sequence[str] = DEFAULT_PARTS) -> Path:
    """Download and unpack ``parts`` into ``<dl_dir>/LibriSpeech``; parts on disk are skipped."""
    dl_dir = Path(dl_dir).absolute()
    corpus_dir = dl_dir / "LibriSpeech"
    missing = [p for p in _check_parts(parts) if not (corpus_dir / p).is_dir()]
    if missing:
        download_librispeech(dl_dir, dataset_parts=missing)
    else:
        log.info("LibriSpeech parts %s already in %s, not downloading", list(parts), corpus_dir)
    return corpus_dir


def download_lm_text(dl_dir: str | Path) -> Path:
    """``<dl_dir>/lm/librispeech-lm-norm.txt.gz`` (LM_TEXT_URL), downloaded unless it is there.
    An interrupted download resumes (``.part`` file); the name appears only once it is complete."""
    path = Path(dl_dir).absolute() / LM_TEXT
    if path.is_file():
        log.info("LibriSpeech LM text already in %s, not downloading", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    resumable_download(LM_TEXT_URL, part)
    os.replace(part, path)
    return path


def check_layout(dl_dir: str | Path, parts: Sequence[str]) -> Path:
    """Raise :class:`CorpusLayoutError` naming the expected path unless every part is on disk.

    Returns the absolute ``<dl_dir>/LibriSpeech`` directory.
    """
    dl_dir = Path(dl_dir).absolute()
    corpus_dir = dl_dir / "LibriSpeech"
    fix = (
        f"Download it with `python -m asr_recipes.bin.prepare corpus=librispeech dl_dir={dl_dir} "
        f"download=true`, or link an existing copy: `ln -s /path/to/LibriSpeech {corpus_dir}`."
    )
    for part in _check_parts(parts):
        part_fix = fix if part not in SYNTHESIZED_PARTS else (
            f"{part!r} exists only in the synthesized corpus: write it with `python -m "
            f"asr_recipes.bin.synthesize out_dir={dl_dir}` (egs/mini/run.sh stage 0).")
        part_dir = corpus_dir / part
        expected = f"{part_dir}/<speaker>/<chapter>/*.flac (with <speaker>-<chapter>.trans.txt)"
        if not part_dir.is_dir():
            hint = ""
            if (dl_dir / part).is_dir():
                hint = f" Found {dl_dir / part}: dl_dir must be the parent of the LibriSpeech/ directory."
            raise CorpusLayoutError(f"LibriSpeech part {part!r} not found: expected {expected}.{hint} {part_fix}")
        has_files = all(next(part_dir.glob(f"*/*/*{ext}"), None) for ext in (".trans.txt", ".flac"))
        if not has_files:
            raise CorpusLayoutError(
                f"LibriSpeech part {part!r} has the wrong layout: expected {expected}, "
                f"found no such files under {part_dir}. {part_fix}"
            )
    return corpus_dir


def prepare(
    dl_dir: str | Path, out_dir: str | Path, parts: Sequence[str] = DEFAULT_PARTS
) -> dict[str, dict[str, object]]:
    """Write ``<out_dir>/librispeech_{recordings,supervisions}_<part>.jsonl.gz`` for ``parts``.

    Parts whose two manifests already exist are not prepared again. Recording sources
    are absolute paths. Returns ``{part: {"recordings": RecordingSet,
    "supervisions": SupervisionSet}}``.
    """
    parts = _check_parts(parts)
    corpus_dir = check_layout(dl_dir, parts)

    def run(tmp_dir: Path, missing: list[str]) -> None:
        try:
            prepare_librispeech(
                corpus_dir, dataset_parts=missing, output_dir=tmp_dir, num_jobs=PREPARE_THREADS
            )
        except AudioLoadingError as e:
            raise AudioLoadingError(
                f"LibriSpeech: an audio file of {missing} cannot be read; re-download or remove it "
                f"(and its line in the .trans.txt). lhotse said: {e}"
            ) from e
        for part in missing:
            if not manifest_path(tmp_dir, NAME, "recordings", part).is_file():
                raise CorpusLayoutError(
                    f"LibriSpeech part {part!r}: lhotse found no utterances in {corpus_dir / part}."
                )

    return prepare_once(out_dir, NAME, parts, run)
