"""Fbank stage: prepared manifests -> cuts with 80-dim log-mel fbank stored with lilcom.

Input:  ``<manifest_dir>/<corpus>_{recordings,supervisions}_<part>.jsonl.gz``
Output: ``<out_dir>/<corpus>_cuts_<part>.jsonl.gz`` (the done-marker, written last and
atomically) whose cuts point at ``<out_dir>/<corpus>_feats_<part>/feats-<shard>.lca``.

Features are lhotse ``Fbank`` with ``NUM_MEL_BINS`` filters, ``FRAME_SHIFT`` /
``FRAME_LENGTH`` windows at ``SAMPLE_RATE`` (audio at other rates is resampled first):
``num_frames == round(duration / FRAME_SHIFT)`` per cut (lhotse's ``compute_num_frames``).
Cuts whose audio cannot be read are skipped, named in a warning and counted; the part
fails as a whole when more than ``max_failed_fraction`` of its cuts fail.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import multiprocessing
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile
import torch
from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, Recording, load_manifest
from lhotse.audio.utils import AudioLoadingError, DurationMismatchError

from asr_recipes.atomic_files import write_atomic_with
from asr_recipes.constants import FRAME_LENGTH, FRAME_SHIFT, NUM_MEL_BINS, SAMPLE_RATE
from asr_recipes.data.manifests import manifest_path, write_atomically

log = logging.getLogger(__name__)

#: Speed factors added for training parts when speed perturbation is on (1.0 is kept).
SPEED_FACTORS = (0.9, 1.1)
#: Cut-id suffix lhotse gives reverberated cuts.
REVERB_SUFFIX = "_rvb"
#: Simulated room impulse responses per reverberated part.
RIR_POOL_SIZE = 100
#: Errors that mean "this cut's audio is unreadable" (missing, truncated, corrupt file).
AUDIO_ERRORS = (AudioLoadingError, DurationMismatchError, soundfile.SoundFileError, OSError, EOFError)
#: lhotse's audio errors list every backend it tried; the first few lines are enough.
MAX_ERROR_CHARS = 300
#: Windows shorter than this (s) left over at the end of a windowed recording are dropped.
MIN_WINDOW = 1.0


class TooManyFailuresError(RuntimeError):
    """More cuts of a part had unreadable audio than ``max_failed_fraction`` allows."""


@dataclass(frozen=True)
class FailedCut:
    cut_id: str
    audio_path: str
    error: str


@dataclass(frozen=True)
class PartSummary:
    """Outcome of the fbank stage for one part."""

    part: str
    cuts_path: Path
    #: Cuts in the manifest (with features).
    num_cuts: int
    #: Cuts skipped because their audio could not be read (empty when reused).
    failed: tuple[FailedCut, ...]
    #: True when the manifest existed already and nothing was computed.
    reused: bool


def fbank_extractor() -> Fbank:
    """The feature extractor of every recipe (80 log-mel bins, 25 ms / 10 ms at 16 kHz)."""
    return Fbank(
        FbankConfig(
            sampling_rate=SAMPLE_RATE,
            num_filters=NUM_MEL_BINS,
            frame_shift=FRAME_SHIFT,
            frame_length=FRAME_LENGTH,
        )
    )


def feature_config() -> dict:
    """The settings of fbank_extractor(), stored in checkpoints so transcription can check them."""
    return {"type": "fbank", "num_mel_bins": NUM_MEL_BINS, "sample_rate": SAMPLE_RATE,
            "frame_shift": FRAME_SHIFT, "frame_length": FRAME_LENGTH}


def _audio_path(cut) -> str:
    return ", ".join(str(s.source) for s in cut.recording.sources)


def _extract_shard(cuts: list, storage_path: str) -> tuple[list, list[FailedCut]]:
    """Compute and store features for ``cuts`` into one lilcom file; returns (done, failed)."""
    extractor = fbank_extractor()
    done, failed = [], []
    with LilcomChunkyWriter(storage_path) as writer:
        for cut in cuts:
            try:
                done.append(cut.compute_and_store_features(extractor, writer))
            except AUDIO_ERRORS as e:
                message = " ".join(str(e).split())[:MAX_ERROR_CHARS] or type(e).__name__
                failed.append(FailedCut(cut.id, _audio_path(cut), message))
    return done, failed


def _init_worker() -> None:
    # One process per core already; intra-op threads would only oversubscribe.
    torch.set_num_threads(1)


def _long_enough(cut) -> bool:
    return cut.duration >= MIN_WINDOW


def _to_sample_rate(cut):
    return cut if cut.sampling_rate == SAMPLE_RATE else cut.resample(SAMPLE_RATE)


def _draw(seed: int, cut_id: str, what: str) -> int:
    """A 63-bit number from (seed, cut id, what): the same for a cut on every run."""
    digest = hashlib.sha256(f"{seed}/{what}/{cut_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def simulated_rirs(directory: Path, seed: int, count: int | None = None) -> list[Recording]:
    """``count`` room impulse responses simulated with lhotse's fast random RIR generator
    (T60 0.1-0.8 s, source 0.2-12 m away), written to ``directory/rir-<k>.wav``.

    A pool, because simulating costs ~50 ms per RIR and convolving ~3 ms per cut. Each RIR is
    a function of (seed, k): the generator's own seeds and, for its torch draws, torch's.
    """
    from lhotse.augmentation.utils import FastRandomRIRGenerator

    from asr_recipes.data.augment import seeded

    directory.mkdir(parents=True, exist_ok=True)
    rirs = []
    for k in range(RIR_POOL_SIZE if count is None else count):
        key = _draw(seed, str(k), "rir")
        with seeded(key):
            rir = FastRandomRIRGenerator(sr=SAMPLE_RATE, room_seed=key % 2 ** 32, source_seed=(key >> 32) % 2 ** 32)()
        path = directory / f"rir-{k:03d}.wav"
        write_atomic_with(path, lambda f: soundfile.write(f, rir[0] / np.abs(rir[0]).max(), SAMPLE_RATE,
                                                            format="WAV", subtype="FLOAT"))
        rirs.append(Recording.from_file(path, recording_id=f"rir-{k:03d}"))
    return rirs


def reverberate(cuts: CutSet, prob: float, seed: int, rirs: Sequence[Recording]) -> CutSet:
    """Replace a ``prob`` fraction of ``cuts`` by versions convolved with one of ``rirs``
    (lhotse ``reverb_rir``, output power kept; cut ids get ``_rvb``). Which cuts, and which
    RIR each gets, are functions of (seed, cut id): reruns are identical."""
    def one(cut):
        if _draw(seed, cut.id, "reverb") / 2 ** 63 >= prob:
            return cut
        return cut.reverb_rir(rir_recording=rirs[_draw(seed, cut.id, "room") % len(rirs)])

    return CutSet.from_cuts(one(c) for c in cuts) if prob > 0 else cuts


def _make_cuts(
    manifest_dir: Path, corpus: str, part: str, perturb: bool, shuffle: bool,
    cut_window: float | None, seed: int, reverb_prob: float = 0.0, rirs: Sequence[Recording] = (),
) -> CutSet:
    rec_path = manifest_path(manifest_dir, corpus, "recordings", part)
    if not rec_path.is_file():
        raise FileNotFoundError(
            f"No recordings manifest {rec_path}: run the prepare stage first "
            f"(python -m asr_recipes.bin.prepare corpus={corpus} out_dir={manifest_dir} ...)."
        )
    sup_path = manifest_path(manifest_dir, corpus, "supervisions", part)
    supervisions = load_manifest(sup_path) if sup_path.is_file() else None
    cuts = CutSet.from_manifests(recordings=load_manifest(rec_path), supervisions=supervisions)
    if supervisions is not None:
        # One cut per utterance, with the utterance id as cut id (what scoring files show).
        cuts = cuts.trim_to_supervisions(keep_overlapping=False)
    if cut_window is not None:
        cuts = cuts.cut_into_windows(duration=cut_window).filter(_long_enough)
    cuts = cuts.map(_to_sample_rate)
    cuts = cuts.to_eager()
    if len(cuts) == 0:
        raise ValueError(f"{rec_path} holds no recordings; re-run the prepare stage for {part!r}.")
    if perturb:
        copies = [cuts] + [cuts.perturb_speed(factor) for factor in SPEED_FACTORS]
        cuts = CutSet.from_cuts(c for copy in copies for c in copy)
    cuts = reverberate(cuts, reverb_prob, seed, rirs)
    if shuffle:
        # The training sampler shuffles within a buffer only; a globally shuffled
        # manifest keeps speed-perturbed copies of one utterance apart.
        cuts = cuts.shuffle(rng=random.Random(seed))
    return cuts


def _compute_part(
    cuts: CutSet, storage_dir: Path, num_jobs: int
) -> tuple[list, list[FailedCut]]:
    cut_list = list(cuts)
    num_shards = max(1, min(num_jobs, len(cut_list)))
    shard_size = -(-len(cut_list) // num_shards)  # ceil
    shards = [cut_list[i:i + shard_size] for i in range(0, len(cut_list), shard_size)]
    paths = [str(storage_dir / f"feats-{i}") for i in range(len(shards))]
    if len(shards) == 1:
        results = [_extract_shard(shards[0], paths[0])]
    else:
        # spawn, not fork: forking a process that already ran torch ops can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(shards), mp_context=ctx, initializer=_init_worker) as ex:
            results = list(ex.map(_extract_shard, shards, paths))
    done = [c for shard_done, _ in results for c in shard_done]
    failed = [f for _, shard_failed in results for f in shard_failed]
    return done, failed


def compute_fbank(
    manifest_dir: str | Path,
    corpus: str,
    parts: Sequence[str],
    out_dir: str | Path,
    speed_perturb: bool = False,
    num_jobs: int = 1,
    *,
    train_parts: Sequence[str] | None = None,
    cut_window: float | None = None,
    max_failed_fraction: float = 0.05,
    seed: int = 0,
    reverb_prob: float = 0.0,
) -> dict[str, PartSummary]:
    """Compute fbank features for ``parts`` of ``corpus``; parts already done are reused.

    Args:
        manifest_dir: where the prepare stage wrote ``<corpus>_recordings_<part>.jsonl.gz``.
        out_dir: where cut manifests and lilcom feature files go.
        speed_perturb: add 0.9x and 1.1x copies (ids suffixed ``_sp0.9`` / ``_sp1.1``)
            of the training parts.
        num_jobs: processes; >1 uses spawned workers, so callers need a ``__main__`` guard.
        train_parts: parts that get speed perturbation and a shuffled manifest;
            None = parts whose name starts with ``train``.
        cut_window: when set, recordings are cut into windows of this many seconds
            (noise corpora); pieces shorter than ``MIN_WINDOW`` are dropped.
        max_failed_fraction: raise :class:`TooManyFailuresError` (and write nothing for
            that part) when more than this fraction of its cuts have unreadable audio.
        seed: seed of the training-manifest shuffle and of the reverberation.
        reverb_prob: fraction of the training parts' cuts (speed-perturbed copies included)
            replaced by reverberant versions (:func:`reverberate`) with room impulse
            responses simulated into ``<out_dir>/<corpus>_rirs_<part>/`` (:func:`simulated_rirs`);
            0 = none.

    Returns:
        ``{part: PartSummary}`` in the order of ``parts``.
    """
    manifest_dir = Path(manifest_dir).absolute()
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for part in parts:
        cuts_path = manifest_path(out_dir, corpus, "cuts", part)
        if cuts_path.is_file():
            with gzip.open(cuts_path, "rt") as f:  # jsonl: one cut per line
                num_cuts = sum(1 for _ in f)
            log.info("%s: %s exists (%d cuts), not recomputing; delete it to redo", part, cuts_path, num_cuts)
            summaries[part] = PartSummary(part, cuts_path, num_cuts, (), reused=True)
            continue
        is_train = part.startswith("train") if train_parts is None else part in train_parts
        reverb = reverb_prob if is_train else 0.0
        storage_dir = out_dir / f"{corpus}_feats_{part}"
        rir_dir = out_dir / f"{corpus}_rirs_{part}"
        # Nothing references an old storage dir without its cut manifest: start clean.
        for directory in (storage_dir, rir_dir):
            shutil.rmtree(directory, ignore_errors=True)
        storage_dir.mkdir(parents=True)
        rirs = simulated_rirs(rir_dir, seed) if reverb > 0 else []
        cuts = _make_cuts(
            manifest_dir, corpus, part, perturb=speed_perturb and is_train, shuffle=is_train,
            cut_window=cut_window, seed=seed, reverb_prob=reverb, rirs=rirs,
        )
        log.info("%s %s: computing fbank for %d cuts with %d job(s)", corpus, part, len(cuts), num_jobs)
        done, failed = _compute_part(cuts, storage_dir, num_jobs)
        for f in failed:
            log.warning(
                "%s %s: skipping cut %s: cannot read %s: %s", corpus, part, f.cut_id, f.audio_path, f.error
            )
        if len(failed) > max_failed_fraction * len(cuts):
            shutil.rmtree(storage_dir, ignore_errors=True)
            files = sorted({f.audio_path for f in failed})
            raise TooManyFailuresError(
                f"{corpus} {part}: {len(failed)} of {len(cuts)} cuts have unreadable audio, more than "
                f"max_failed_fraction={max_failed_fraction}; e.g. {', '.join(files[:5])}. Re-download or "
                f"fix these files (or raise max_failed_fraction). Nothing was written for {part!r}."
            )
        write_atomically(CutSet.from_cuts(done), cuts_path)
        summaries[part] = PartSummary(part, cuts_path, len(done), tuple(failed), reused=False)
    for s in summaries.values():
        log.info(
            "fbank summary %s %s: %d cuts%s, %d skipped (unreadable audio) -> %s",
            corpus, s.part, s.num_cuts, " (reused)" if s.reused else "", len(s.failed), s.cuts_path,
        )
    return summaries
