"""Corpus registry: recipes pick a corpus by name, so they differ by config only.

Each corpus is one module in this package (``librispeech``, ``aishell``, ``musan``)
that follows the contract below and is listed in ``_CORPORA``; :func:`get_corpus`
imports it by name and returns a :class:`CorpusSpec`. Adding a corpus means adding a
module, never an ``elif`` in a stage.

Module contract (names looked up on the module):

- ``download(dl_dir, parts) -> Path``: fetch the corpus under ``dl_dir``; skips parts
  already on disk. Returns the corpus directory.
- ``prepare(dl_dir, out_dir, parts) -> dict[part, dict[kind, manifest]]``: write
  ``<out_dir>/<corpus>_{recordings,supervisions}_<part>.jsonl.gz`` (skipping parts
  already written) and return them, ``kind`` being ``"recordings"`` /
  ``"supervisions"``. A missing corpus raises :class:`CorpusLayoutError`.
- ``DEFAULT_PARTS``: tuple of part names prepared when a recipe names none.
- optional ``TRAIN_PARTS``: parts that get speed perturbation and shuffled cut
  manifests (default: the parts whose name starts with ``train``).
- optional ``CUT_WINDOW``: seconds; when set, the fbank stage cuts long recordings
  into windows of this length (noise corpora such as MUSAN). Default ``None``.
- optional ``download_lm_text(dl_dir) -> Path``: fetch the corpus' own language-model text
  (LibriSpeech's librispeech-lm-norm.txt.gz) under ``dl_dir`` unless it is there; returns it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence


class CorpusLayoutError(FileNotFoundError):
    """The corpus is not where the recipe expects it, or not in the expected layout.

    The message names the expected path and how to download or link the corpus.
    """


def check_parts(corpus: str, parts: Sequence[str], known: Sequence[str]) -> list[str]:
    """``parts`` as a list; a ValueError names the unknown ones and lists the known ones."""
    parts = list(parts)
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise ValueError(f"Unknown {corpus} part(s) {unknown}; known parts: {', '.join(known)}.")
    return parts


@dataclass(frozen=True)
class CorpusSpec:
    """What the prepare and fbank stages need to know about one corpus."""

    name: str
    download: Callable[[Path, Sequence[str]], Path]
    prepare: Callable[[Path, Path, Sequence[str]], Mapping[str, Mapping[str, object]]]
    default_parts: tuple[str, ...]
    #: Parts that are speed-perturbed (when asked) and shuffled in the fbank stage;
    #: None = the parts whose name starts with "train".
    train_parts: tuple[str, ...] | None
    #: Window length (s) for cutting long recordings in the fbank stage; None = whole.
    cut_window: float | None = None
    #: Fetches the corpus' language-model text (None: the corpus has none).
    download_lm_text: Callable[[Path], Path] | None = None

    def parts_or_default(self, parts: Sequence[str] | None) -> list[str]:
        """The parts a stage was given, or the corpus's default parts when given None."""
        return list(self.default_parts if parts is None else parts)

    def is_train_part(self, part: str) -> bool:
        if self.train_parts is None:
            return part.startswith("train")
        return part in self.train_parts


#: Corpus name -> module. Adding a corpus: a module following the contract + one line.
#: (The synthesized corpora of asr_recipes.synth are written in these layouts, e.g. LibriSpeech's,
#: and prepared as that corpus; they are not corpora of their own.)
_CORPORA = {
    "librispeech": f"{__name__}.librispeech",
    "aishell": f"{__name__}.aishell",
    "musan": f"{__name__}.musan",
}


def available_corpora() -> list[str]:
    """Names accepted by :func:`get_corpus`."""
    return sorted(_CORPORA)


def get_corpus(name: str) -> CorpusSpec:
    """Return the :class:`CorpusSpec` of corpus ``name``."""
    if name not in _CORPORA:
        raise ValueError(f"Unknown corpus {name!r}; available corpora: {', '.join(available_corpora())}.")
    module = importlib.import_module(_CORPORA[name])
    missing = [a for a in ("download", "prepare", "DEFAULT_PARTS") if not hasattr(module, a)]
    if missing:
        raise TypeError(
            f"Corpus module {module.__name__} lacks {', '.join(missing)}; "
            f"see the contract in {__name__}'s docstring."
        )
    return CorpusSpec(
        name=name,
        download=module.download,
        prepare=module.prepare,
        default_parts=tuple(module.DEFAULT_PARTS),
        train_parts=tuple(module.TRAIN_PARTS) if hasattr(module, "TRAIN_PARTS") else None,
        cut_window=getattr(module, "CUT_WINDOW", None),
        download_lm_text=getattr(module, "download_lm_text", None),
    )
