"""Checkpoint files in an experiment directory: their names, and finding the one to resume.

``epoch-<N>.pt`` at the end of each epoch, ``checkpoint-<step>.pt`` every save_every_n steps
(the newest K kept), ``minutes-<m>.pt`` when the training time passes multiples of
save_every_minutes, ``averaged-epoch-<N>-avg-<K>.pt`` written by the average stage, and
``latest.txt`` naming the newest training checkpoint, updated after the file itself is complete.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from asr_recipes.checkpoint.io import LATEST, CheckpointError, UnsafeCheckpointError, load_checkpoint

log = logging.getLogger(__name__)

_STEP_RE = re.compile(r"^checkpoint-(\d+)\.pt$")
_EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")
_MINUTES_RE = re.compile(r"^minutes-([0-9.]+)\.pt$")


def _numbered(exp_dir: Path, pattern: re.Pattern) -> List[Path]:
    """Files of exp_dir whose names match pattern, sorted by its number (group 1)."""
    found = [(float(m.group(1)), p) for p in Path(exp_dir).glob("*.pt") if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def step_checkpoints(exp_dir: Path) -> List[Path]:
    """checkpoint-<step>.pt files, oldest first."""
    return _numbered(exp_dir, _STEP_RE)


def epoch_checkpoint(exp_dir: Path, epoch: int) -> Path:
    return Path(exp_dir) / f"epoch-{epoch}.pt"


def averaged_path(exp_dir: str | os.PathLike, epoch: int, avg: int) -> Path:
    return Path(exp_dir) / f"averaged-epoch-{epoch}-avg-{avg}.pt"


def epoch_checkpoints(exp_dir: Path) -> List[Path]:
    """epoch-<n>.pt files, oldest first."""
    return _numbered(exp_dir, _EPOCH_RE)


#: ``epoch`` value that names the newest epoch checkpoint (runs budgeted by time).
LAST = "last"


def resolve_epoch_avg(exp_dir: Path, epoch, avg: int) -> tuple:
    """(epoch, avg) for averaging and decoding; ``epoch`` may be "last".

    "last" means the newest epoch-N.pt in exp_dir (a run stopped by its time budget ends at
    an epoch the config does not know); avg is then capped at N-1, so the average is the
    mean of the models between the ends of epochs N-avg and N (the running averages of two
    checkpoints) and never reaches back to the untrained start. Other values are returned
    as given. Raises CheckpointError if "last" finds no epoch checkpoint.
    """
    if epoch != LAST:
        return epoch, avg
    epochs = epoch_checkpoints(exp_dir)
    if not epochs:
        raise CheckpointError(f"epoch=last: no epoch-*.pt in {exp_dir}; train first (or give epoch=N)")
    last = int(_EPOCH_RE.match(epochs[-1].name).group(1))
    capped = max(1, min(avg, last - 1))
    if capped != avg:
        log.info("epoch=last is epoch %d: averaging %d epoch(s) instead of %d", last, capped, avg)
    return last, capped


def prune_step_checkpoints(exp_dir: Path, keep_last_k: int) -> None:
    """Deletes all but the newest ``keep_last_k`` checkpoint-<step>.pt files (0 keeps all)."""
    if keep_last_k <= 0:
        return
    for old in step_checkpoints(exp_dir)[:-keep_last_k]:
        old.unlink(missing_ok=True)


def remove_stale_temp_files(exp_dir: Path) -> None:
    """Deletes half-written temp files left by a process killed while saving."""
    for tmp in Path(exp_dir).glob(".*.tmp-*"):
        log.warning("removing %s, left by an interrupted checkpoint write", tmp)
        tmp.unlink(missing_ok=True)


def resume_candidates(exp_dir: Path) -> List[Path]:
    """Checkpoints to try when resuming, best first: the one latest.txt names, then the rest
    newest first by modification time (used if the named one is unreadable)."""
    exp_dir = Path(exp_dir)
    snapshots = _numbered(exp_dir, _MINUTES_RE)
    files = sorted(step_checkpoints(exp_dir) + epoch_checkpoints(exp_dir) + snapshots,
                   key=lambda p: p.stat().st_mtime, reverse=True)
    latest = exp_dir / LATEST
    if latest.is_file():
        named = exp_dir / latest.read_text().strip()
        if named in files:
            files.remove(named)
            files.insert(0, named)
    return files


def load_latest(exp_dir: Path, map_location: str = "cpu") -> Optional[Dict[str, Any]]:
    """The newest readable checkpoint in exp_dir (with its path under "path"), or None if none.

    An unreadable (truncated) file is skipped for an older one; a file holding unsafe types
    (UnsafeCheckpointError) stops the search: resuming from an older checkpoint, or from
    scratch, would silently overwrite a run that only needs converting."""
    for path in resume_candidates(exp_dir):
        try:
            ckpt = load_checkpoint(path, map_location)
        except UnsafeCheckpointError:
            raise
        except CheckpointError as e:
            log.warning("skipping unusable checkpoint: %s", e)
            continue
        ckpt["path"] = str(path)
        return ckpt
    return None
