"""Manifest files on disk: one naming scheme, atomic writes, prepare-once semantics.

Every stage names its lhotse manifests ``<dir>/<corpus>_<kind>_<part>.jsonl.gz`` with
``kind`` in ``recordings``, ``supervisions`` (prepare stage) or ``cuts`` (fbank stage).
A file is only ever written under a temporary name and renamed into place, so a file
that exists is complete, and its existence is the stage's done-marker.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from lhotse import load_manifest

log = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".jsonl.gz"
PREPARED_KINDS = ("recordings", "supervisions")


def manifest_path(directory: str | Path, corpus: str, kind: str, part: str) -> Path:
    """``<directory>/<corpus>_<kind>_<part>.jsonl.gz``."""
    return Path(directory) / f"{corpus}_{kind}_{part}{MANIFEST_SUFFIX}"


def write_atomically(manifest, path: str | Path) -> Path:
    """Write a lhotse manifest (RecordingSet, SupervisionSet, CutSet) to ``path`` atomically.

    The temporary name keeps the ``.jsonl.gz`` suffix because lhotse picks the format
    from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        manifest.to_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def prepare_once(
    out_dir: str | Path,
    corpus: str,
    parts: Sequence[str],
    run: Callable[[Path, list[str]], None],
    kinds: Sequence[str] = PREPARED_KINDS,
) -> dict[str, dict[str, object]]:
    """Run a lhotse ``prepare_*`` function for the parts whose manifests are missing.

    ``run(tmp_dir, missing_parts)`` must write ``<corpus>_<kind>_<part>.jsonl.gz`` for
    every missing part into ``tmp_dir``, a fresh directory inside ``out_dir``. lhotse's
    preparers silently reuse whatever manifests sit in their output directory, so they
    never see ``out_dir`` itself; finished files are renamed into ``out_dir`` afterwards.

    Returns ``{part: {kind: manifest}}`` for all ``parts``, read back from ``out_dir``.
    """
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = [
        p for p in parts if not all(manifest_path(out_dir, corpus, k, p).is_file() for k in kinds)
    ]
    if len(missing) < len(parts):
        done = [p for p in parts if p not in missing]
        log.info("%s: manifests of %s already in %s, not preparing them again", corpus, done, out_dir)
    if missing:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{corpus}-prepare-") as tmp:
            run(Path(tmp), missing)
            for part in missing:
                for kind in kinds:
                    src = manifest_path(tmp, corpus, kind, part)
                    if not src.is_file():
                        raise RuntimeError(
                            f"{corpus}: preparing part {part!r} produced no {kind} manifest "
                            f"(expected {src.name}); is {part!r} a valid part name?"
                        )
                    os.replace(src, manifest_path(out_dir, corpus, kind, part))
        log.info("%s: wrote manifests of %s to %s", corpus, missing, out_dir)
    return {
        p: {k: load_manifest(manifest_path(out_dir, corpus, k, p)) for k in kinds} for p in parts
    }
