"""AISHELL-1 (openslr.org/33): download and manifest preparation via lhotse.

Expected layout (what ``data_aishell.tgz`` and its per-speaker tarballs unpack to)::

    <dl_dir>/aishell/data_aishell/wav/{train,dev,test}/<speaker>/<utt_id>.wav
    <dl_dir>/aishell/data_aishell/transcript/aishell_transcript_v0.8.txt

lhotse's preparer always processes all three splits, so all three must be present.
Transcripts have their word-separating spaces removed (character-level text).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from lhotse.audio.utils import AudioLoadingError
from lhotse.recipes.aishell import download_aishell, prepare_aishell

from asr_recipes.data.corpora import CorpusLayoutError, check_parts
from asr_recipes.data.manifests import prepare_once

log = logging.getLogger(__name__)

NAME = "aishell"
SPLITS = ("train", "dev", "test")
DEFAULT_PARTS = SPLITS
TRAIN_PARTS = ("train",)
TRANSCRIPT = Path("data_aishell/transcript/aishell_transcript_v0.8.txt")


def _check_parts(parts: Sequence[str]) -> list[str]:
    return check_parts("AISHELL-1", parts, SPLITS)


def download(dl_dir: str | Path, parts: Sequence[str] = DEFAULT_PARTS) -> Path:
    """Download and unpack AISHELL-1 (all splits, one tarball) into ``<dl_dir>/aishell``.

    Skipped when the wav directory of every requested part is already on disk.
    """
    dl_dir = Path(dl_dir).absolute()
    corpus_dir = dl_dir / "aishell"
    wav_dir = corpus_dir / "data_aishell" / "wav"
    if all((wav_dir / p).is_dir() for p in _check_parts(parts)):
        log.info("AISHELL-1 already in %s, not downloading", corpus_dir)
        return corpus_dir
    return download_aishell(dl_dir)


def check_layout(dl_dir: str | Path) -> Path:
    """Raise :class:`CorpusLayoutError` naming the expected path unless AISHELL-1 is on disk.

    Returns the absolute ``<dl_dir>/aishell`` directory (the parent of ``data_aishell/``).
    """
    dl_dir = Path(dl_dir).absolute()
    corpus_dir = dl_dir / "aishell"
    fix = (
        f"Download it with `python -m asr_recipes.bin.prepare corpus=aishell dl_dir={dl_dir} "
        f"download=true`, or link an existing copy: `ln -s /path/to/aishell {corpus_dir}` "
        f"(the directory that contains data_aishell/)."
    )
    hint = ""
    if (dl_dir / "data_aishell").is_dir():
        hint = f" Found {dl_dir / 'data_aishell'}: it must sit in {corpus_dir}/."
    transcript = corpus_dir / TRANSCRIPT
    if not transcript.is_file():
        raise CorpusLayoutError(f"AISHELL-1 transcript not found: expected {transcript}.{hint} {fix}")
    for split in SPLITS:
        split_dir = corpus_dir / "data_aishell" / "wav" / split
        if next(split_dir.glob("*/*.wav"), None) is None:
            raise CorpusLayoutError(
                f"AISHELL-1 split {split!r} not found: expected {split_dir}/<speaker>/<utt_id>.wav "
                f"(lhotse prepares train, dev and test together, so all three are needed; "
                f"the per-speaker .tar.gz files in wav/ must be unpacked).{hint} {fix}"
            )
    return corpus_dir


def prepare(
    dl_dir: str | Path, out_dir: str | Path, parts: Sequence[str] = DEFAULT_PARTS
) -> dict[str, dict[str, object]]:
    """Write ``<out_dir>/aishell_{recordings,supervisions}_<part>.jsonl.gz`` for ``parts``.

    Parts whose two manifests already exist are not prepared again (but lhotse reads
    all three splits whenever any part is missing). Recording sources are absolute
    paths. Returns ``{part: {"recordings": RecordingSet, "supervisions": SupervisionSet}}``.
    """
    parts = _check_parts(parts)
    corpus_dir = check_layout(dl_dir)

    def run(tmp_dir: Path, missing: list[str]) -> None:
        try:
            prepared = prepare_aishell(corpus_dir, output_dir=tmp_dir)
        except AudioLoadingError as e:
            raise AudioLoadingError(
                f"AISHELL-1: an audio file under {corpus_dir} cannot be read; re-download or "
                f"remove it. lhotse said: {e}"
            ) from e
        for part in missing:
            if len(prepared[part]["recordings"]) == 0:
                raise CorpusLayoutError(
                    f"AISHELL-1 part {part!r}: no wav file under {corpus_dir}/data_aishell/wav/{part} "
                    f"has a line in {corpus_dir / TRANSCRIPT}."
                )

    return prepare_once(out_dir, NAME, parts, run)
