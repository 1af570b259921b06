"""Self-describing, atomically written checkpoints and their discovery for resuming.

A checkpoint is one ``torch.save`` dict. Besides weights and training state it carries
everything needed to rebuild the model and its input pipeline without the training config:

    format          "asr-recipes/1"
    model_config    architecture mapping for models.build_transducer
    vocab_size, feature_dim
    tokenizer       Tokenizer.to_dict() (sentencepiece model bytes embedded)
    feature_config  fbank settings the model was trained on
    decoding        the recipe's decoding settings: defaults of decode / transcribe / export
                    (method, beam, max_sym_per_frame; chunk_size, left_context if streaming)
    model           state_dict;  model_avg: running-average state_dict (float64) or None
    optimizer, scheduler, grad_scaler, sampler, rng     (training state)
    progress        {"epoch", "step", "batches_in_epoch", "average_count", "train_seconds"}
    train_config    the resolved training config, for the record

Files in an experiment directory: ``epoch-<N>.pt`` at the end of each epoch,
``checkpoint-<step>.pt`` every save_every_n steps (the newest K kept), ``minutes-<m>.pt`` when
the training time passes multiples of save_every_minutes, and ``latest.txt``
naming the newest file, updated after the file itself is complete.
"""

import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from asr_recipes.atomic_files import write_atomic, write_atomic_with

log = logging.getLogger(__name__)

FORMAT = "asr-recipes/1"
LATEST = "latest.txt"
_STEP_RE = re.compile(r"^checkpoint-(\d+)\.pt$")
_EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")
_MINUTES_RE = re.compile(r"^minutes-([0-9.]+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or not one of ours."""


def save_checkpoint(path: Path, state: Dict[str, Any], update_latest: bool = True) -> None:
    """Writes ``state`` to ``path`` atomically (asr_recipes.atomic_files), then, with
    update_latest, points latest.txt at it (the checkpoint a restart resumes from).

    A process killed at any moment leaves either the old file set or the new one, never a
    truncated checkpoint under a real name.
    """
    path = Path(path)
    write_atomic_with(path, lambda f: torch.save({**state, "format": FORMAT}, f))
    if update_latest:
        write_atomic(path.parent / LATEST, path.name + "\n")


def load_checkpoint(path: Path, map_location: str = "cpu") -> Dict[str, Any]:
    """Loads one of our checkpoints; raises CheckpointError naming the file if it is not usable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, pickle errors ...
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}): the file is truncated "
                              f"or not written by torch.save; expected an asr-recipes checkpoint (format {FORMAT!r}) "
                              "written by the train or average stage") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not an asr-recipes checkpoint: format {found!r}, expected {FORMAT!r} "
                              "(a checkpoint written by the train or average stage of this version)")
    return ckpt


def _numbered(exp_dir: Path, pattern: re.Pattern) -> List[Path]:
    """Files of exp_dir whose names match pattern, sorted by its number (group 1)."""
    found = [(float(m.group(1)), p) for p in Path(exp_dir).glob("*.pt") if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def step_checkpoints(exp_dir: Path) -> List[Path]:
    """checkpoint-<step>.pt files, oldest first."""
    return _numbered(exp_dir, _STEP_RE)


def epoch_checkpoint(exp_dir: Path, epoch: int) -> Path:
    return Path(exp_dir) / f"epoch-{epoch}.pt"


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
    """The newest readable checkpoint in exp_dir (with its path under "path"), or None if none."""
    for path in resume_candidates(exp_dir):
        try:
            ckpt = load_checkpoint(path, map_location)
        except CheckpointError as e:
            log.warning("skipping unusable checkpoint: %s", e)
            continue
        ckpt["path"] = str(path)
        return ckpt
    return None
