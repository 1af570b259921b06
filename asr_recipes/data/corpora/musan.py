"""MUSAN (openslr.org/17) noise, music and babble for on-the-fly noise mixing (optional).

Expected layout::

    <dl_dir>/musan/{music,speech,noise}/<source>/*.wav

Only recording manifests are written (``musan_recordings_<part>.jsonl.gz``): the noise
needs no transcripts. The fbank stage cuts the recordings into ``CUT_WINDOW``-second
pieces; the datamodule mixes those cuts into training batches (lhotse ``CutMix``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from lhotse.audio.utils import AudioLoadingError
from lhotse.recipes.musan import download_musan, prepare_musan

from asr_recipes.data.corpora import CorpusLayoutError, check_parts
from asr_recipes.data.manifests import prepare_once

log = logging.getLogger(__name__)

NAME = "musan"
DEFAULT_PARTS = ("music", "speech", "noise")
#: No part is training data of its own, so none is speed-perturbed or shuffled.
TRAIN_PARTS: tuple[str, ...] = ()
#: Seconds per noise cut; long music tracks would otherwise dominate the feature storage.
CUT_WINDOW = 10.0


def _check_parts(parts: Sequence[str]) -> list[str]:
    return check_parts("MUSAN", parts, DEFAULT_PARTS)


def download(dl_dir: str | Path, parts: Sequence[str] = DEFAULT_PARTS) -> Path:
    """Download and unpack MUSAN (one tarball) into ``<dl_dir>/musan``; skipped when on disk."""
    dl_dir = Path(dl_dir).absolute()
    corpus_dir = dl_dir / "musan"
    if all((corpus_dir / p).is_dir() for p in _check_parts(parts)):
        log.info("MUSAN already in %s, not downloading", corpus_dir)
        return corpus_dir
    return download_musan(dl_dir)


def check_layout(dl_dir: str | Path, parts: Sequence[str]) -> Path:
    """Raise :class:`CorpusLayoutError` naming the expected path unless every part is on disk."""
    dl_dir = Path(dl_dir).absolute()
    corpus_dir = dl_dir / "musan"
    for part in _check_parts(parts):
        if next((corpus_dir / part).rglob("*.wav"), None) is None:
            raise CorpusLayoutError(
                f"MUSAN part {part!r} not found: expected {corpus_dir / part}/<source>/*.wav. "
                f"Download it with `python -m asr_recipes.bin.prepare corpus=musan dl_dir={dl_dir} "
                f"download=true`, or link an existing copy: `ln -s /path/to/musan {corpus_dir}`."
            )
    return corpus_dir


def prepare(
    dl_dir: str | Path, out_dir: str | Path, parts: Sequence[str] = DEFAULT_PARTS
) -> dict[str, dict[str, object]]:
    """Write ``<out_dir>/musan_recordings_<part>.jsonl.gz`` for ``parts``.

    Parts already written are not prepared again. Returns ``{part: {"recordings":
    RecordingSet}}``.
    """
    parts = _check_parts(parts)
    corpus_dir = check_layout(dl_dir, parts)

    def run(tmp_dir: Path, missing: list[str]) -> None:
        try:
            prepare_musan(corpus_dir, output_dir=tmp_dir, parts=missing)
        except AudioLoadingError as e:
            raise AudioLoadingError(
                f"MUSAN: an audio file under {corpus_dir} cannot be read; re-download or remove it. "
                f"lhotse said: {e}"
            ) from e

    return prepare_once(out_dir, NAME, parts, run, kinds=("recordings",))
