"""The data the GPU check trains and decodes on: built here (espeak-ng, CPU), carried there.

The GPU machine has no network and no espeak-ng, so the corpus travels as a compact bundle
of fbank features, cut manifests and the tokenizer (``make gpu-prepare`` builds it):

    build_bundle(spec, out_dir, scratch_dir)   synthesize -> manifests -> fbank -> tokenizer ->
                                               long utterances (below) -> out_dir/
    install_bundle(bundle_dir, data_dir, repeat)  cut manifests usable from data_dir (what the
                                               training and decoding stages read)

Bundle layout (feature paths inside the manifests are relative to the bundle directory)::

    bundle.json                              what is in it (BundleSpec, per-part counts)
    lang/                                    the tokenizer (tokenizer.json, tokens.txt, ...)
    librispeech_cuts_<part>.jsonl.gz         one MonoCut per utterance, no audio
    librispeech_feats_<part>.lca             lilcom-compressed fbank frames

Long utterances: a synthesized sentence lasts ~3 s, a LibriSpeech training utterance ~12 s,
and the full loss' cost grows with T x U. So each bundle utterance is ``concat`` consecutive
sentences of one speaker: their fbank frames (80 x 10 ms, as computed by the fbank stage)
concatenated in time and their transcripts joined. No audio is kept, only features.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from lhotse import CutSet, LilcomChunkyWriter, MonoCut, SupervisionSegment, load_manifest
from lhotse.features.base import Features

from asr_recipes.atomic_files import write_atomic
from asr_recipes.constants import FRAME_SHIFT, SAMPLE_RATE
from asr_recipes.data.corpora import get_corpus
from asr_recipes.data.features import compute_fbank
from asr_recipes.data.filters import cut_text
from asr_recipes.data.manifests import manifest_path, write_atomically
from asr_recipes.data.tokenizer import train_tokenizer
from asr_recipes.synth.corpus import synthesize_librispeech_layout

log = logging.getLogger(__name__)

CORPUS = "librispeech"
TRAIN_PART, TEST_PART = "train-clean-100", "test-clean"
INFO_FILE = "bundle.json"
LANG_DIR = "lang"
FORMAT = 1


class BundleError(RuntimeError):
    """A bundle is missing or unusable; the message says how to rebuild it."""


@dataclass(frozen=True)
class BundleSpec:
    """What to synthesize and how to pack it.

    train_sentences / test_sentences: synthesized sentences used per part (the synthesizer
    makes max(train, test) per split; the rest is left out). concat: sentences per bundle
    utterance. token_kind / vocab_size: the tokenizer, trained on the training transcripts.
    """

    task: str = "sentences"
    train_sentences: int = 640
    test_sentences: int = 320
    concat: int = 4
    token_kind: str = "bpe"
    vocab_size: Optional[int] = 500
    seed: int = 0

    def __post_init__(self):
        for name in ("train_sentences", "test_sentences", "concat"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _speaker_and_index(cut_id: str) -> tuple[str, int]:
    """LibriSpeech ids are <speaker>-<chapter>-<index>."""
    speaker, chapter, index = cut_id.rsplit("-", 2)
    return f"{speaker}-{chapter}", int(index)


def select_sentences(cuts: CutSet, n: int) -> list:
    """n cuts spread evenly over the speakers: every speaker's first, then every second, ..."""
    ranked = sorted(cuts, key=lambda c: (_speaker_and_index(c.id)[1], _speaker_and_index(c.id)[0]))
    if len(ranked) < n:
        raise ValueError(f"asked for {n} sentences, only {len(ranked)} were synthesized")
    return ranked[:n]


def group_by_speaker(cuts: list, concat: int) -> list[list]:
    """Runs of up to ``concat`` consecutive sentences of one speaker (the last run of a
    speaker may be shorter), in speaker and sentence order."""
    by_speaker = defaultdict(list)
    for cut in cuts:
        by_speaker[_speaker_and_index(cut.id)[0]].append(cut)
    groups = []
    for speaker in sorted(by_speaker):
        run = sorted(by_speaker[speaker], key=lambda c: _speaker_and_index(c.id)[1])
        groups += [run[i:i + concat] for i in range(0, len(run), concat)]
    return groups


def concatenate(group: list, writer: LilcomChunkyWriter, storage_path: str) -> MonoCut:
    """One audio-less cut whose features are the group's frames back to back (F=80)."""
    frames = np.concatenate([cut.load_features() for cut in group], axis=0)  # (sum T_i, F)
    cut_id = group[0].id if len(group) == 1 else f"{group[0].id}-cat{len(group)}"
    key = writer.write(cut_id, frames)
    duration = round(frames.shape[0] * FRAME_SHIFT, 6)  # exactly num_frames frames when loaded
    speaker = group[0].supervisions[0].speaker if group[0].supervisions else None
    features = Features(type=group[0].features.type, num_frames=frames.shape[0], num_features=frames.shape[1],
                        frame_shift=FRAME_SHIFT, sampling_rate=SAMPLE_RATE, start=0.0, duration=duration,
                        storage_type="lilcom_chunky", storage_path=storage_path, storage_key=key,
                        recording_id=None, channels=0)
    text = " ".join(cut_text(cut) for cut in group)
    supervision = SupervisionSegment(id=cut_id, recording_id=cut_id, start=0.0, duration=duration, channel=0,
                                     text=text, language="English", speaker=speaker)
    return MonoCut(id=cut_id, start=0.0, duration=duration, channel=0, features=features,
                   supervisions=[supervision])


def _pack_part(cuts: list, concat: int, out_dir: Path, part: str) -> dict:
    storage = f"{CORPUS}_feats_{part}.lca"
    out_dir.mkdir(parents=True, exist_ok=True)
    packed = []
    with LilcomChunkyWriter(out_dir / storage) as writer:
        for group in group_by_speaker(cuts, concat):
            packed.append(concatenate(group, writer, storage))
    write_atomically(CutSet.from_cuts(packed), manifest_path(out_dir, CORPUS, "cuts", part))
    seconds = sum(c.duration for c in packed)
    return {"sentences": len(cuts), "utterances": len(packed), "hours": round(seconds / 3600, 4),
            "mean_seconds": round(seconds / len(packed), 2), "max_seconds": round(max(c.duration for c in packed), 2)}


def build_bundle(spec: BundleSpec, out_dir: Path, scratch_dir: Path, num_jobs: int = 2) -> dict:
    """Builds the bundle into ``out_dir`` (replaced as a whole at the end, never half-written);
    ``scratch_dir`` keeps the synthesized corpus and full-size features for reruns. Returns
    bundle.json's content."""
    out_dir, scratch_dir = Path(out_dir).absolute(), Path(scratch_dir).absolute()
    sentences = {TRAIN_PART: spec.train_sentences, TEST_PART: spec.test_sentences}
    parts = list(sentences)
    synthesize_librispeech_layout(scratch_dir / "download", task=spec.task, size=max(sentences.values()),
                                  seed=spec.seed, num_jobs=num_jobs)
    get_corpus(CORPUS).prepare(scratch_dir / "download", scratch_dir / "manifests", parts)
    compute_fbank(scratch_dir / "manifests", CORPUS, parts, scratch_dir / "fbank", num_jobs=num_jobs)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        chosen = {part: select_sentences(load_manifest(manifest_path(scratch_dir / "fbank", CORPUS, "cuts", part)), n)
                  for part, n in sentences.items()}
        tokenizer = train_tokenizer(spec.token_kind, [cut_text(c) for c in chosen[TRAIN_PART]], spec.vocab_size)
        tokenizer.save(tmp / LANG_DIR)
        info = {"format": FORMAT, "spec": dataclasses.asdict(spec), "corpus": CORPUS,
                "tokenizer": {"kind": spec.token_kind, "vocab_size": tokenizer.vocab_size},
                "parts": {part: _pack_part(cuts, spec.concat, tmp, part) for part, cuts in chosen.items()}}
        write_atomic(tmp / INFO_FILE, json.dumps(info, indent=1) + "\n")
        tmp.chmod(0o755)  # mkdtemp made it private
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("bundle in %s: %s", out_dir, json.dumps(info["parts"]))
    return info


def read_info(bundle_dir: Path) -> dict:
    """bundle.json of ``bundle_dir``; BundleError if there is none or it is of another format."""
    path = Path(bundle_dir) / INFO_FILE
    if not path.is_file():
        raise BundleError(f"no GPU-check data bundle in {bundle_dir} ({INFO_FILE} missing): build it with "
                          "`make gpu-prepare` (python -m asr_recipes.bin.gpu_prepare) before the check")
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("format") != FORMAT:
        raise BundleError(f"{path} has format {info.get('format')!r}, this code reads {FORMAT}: rebuild it with "
                          "`make gpu-prepare`")
    return info


def install_bundle(bundle_dir: Path, data_dir: Path, repeat: int = 1) -> dict:
    """Writes ``data_dir/librispeech_cuts_<part>.jsonl.gz`` for every bundled part, with absolute
    feature paths (the bundle may be anywhere) and the training cuts listed ``repeat`` times
    (ids suffixed ``_repeat<k>``; the features are shared, not copied), so that one epoch
    outlasts a timed training run. Returns bundle.json's content plus "lang_dir"."""
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a positive integer, got {repeat!r}")
    bundle_dir = Path(bundle_dir).absolute()
    info = read_info(bundle_dir)
    for part in info["parts"]:
        cuts = load_manifest(manifest_path(bundle_dir, info["corpus"], "cuts", part))
        cuts = cuts.with_features_path_prefix(str(bundle_dir))
        if part == TRAIN_PART and repeat > 1:
            cuts = cuts.repeat(times=repeat).to_eager()
        write_atomically(cuts, manifest_path(data_dir, info["corpus"], "cuts", part))
    return {**info, "lang_dir": str(bundle_dir / LANG_DIR)}
