"""What a GPU run carries, built on this (CPU) machine: ``<out_dir>/bundle`` and ``<out_dir>/wheels``.

``prepare(...)`` builds both and refuses a total over ``max_mib``: a device run sends the
working tree and the carried folders together, at most 64 MiB.
"""

from __future__ import annotations

import logging
from pathlib import Path

from asr_recipes.tools.gpu_check.bundle import BundleSpec, build_bundle
from asr_recipes.tools.gpu_check.wheels import download_wheels

log = logging.getLogger(__name__)


def size_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20


def prepare(out_dir: Path, scratch_dir: Path, spec: BundleSpec, wheels: bool, python_version: str,
            num_jobs: int, max_mib: float) -> dict:
    """Builds the bundle (and the wheels if ``wheels``); returns {"bundle": info, "mib": {...}}."""
    out_dir = Path(out_dir)
    info = build_bundle(spec, out_dir / "bundle", Path(scratch_dir), num_jobs=num_jobs)
    if wheels:
        download_wheels(out_dir / "wheels", python_version=python_version)
    sizes = {name: round(size_mib(out_dir / name), 1) for name in ("bundle", "wheels") if (out_dir / name).is_dir()}
    total = sum(sizes.values())
    if total > max_mib:
        raise RuntimeError(f"{out_dir} holds {total:.1f} MiB ({sizes}), more than max_mib={max_mib}: a device run "
                           "carries at most 64 MiB with the working tree; use fewer sentences")
    log.info("%s: %s MiB (%.1f in all)", out_dir, sizes, total)
    return {"bundle": info, "mib": sizes}
