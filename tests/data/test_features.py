"""Fbank stage: features equal lhotse's Fbank computed directly; bad audio is skipped and counted."""

import gzip
import logging
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, Fbank, FbankConfig, Recording, RecordingSet
from lhotse.recipes.librispeech import prepare_librispeech
from lhotse.utils import compute_num_frames

from asr_recipes.data.features import TooManyFailuresError, compute_fbank
from tests.data.corpus_layouts import tone, truncate, write_librispeech

PARTS = {"train-clean-100": [1.0, 1.37, 2.05, 0.64], "dev-clean": [1.21, 0.9]}
# lilcom stores values on a 2**-5 grid (LilcomChunkyWriter's default tick_power=-5).
LILCOM_ATOL = 2**-5


def reference_fbank(audio: np.ndarray, sr: int = 16000) -> np.ndarray:
    """(T, 80) fbank straight from lhotse, no storage in between."""
    return Fbank(FbankConfig(sampling_rate=sr, num_filters=80)).extract(audio, sr)


@pytest.fixture
def corpus(tmp_path):
    """LibriSpeech-layout corpus and its manifests, prepared by lhotse directly."""
    truth = write_librispeech(tmp_path / "dl", PARTS)
    prepare_librispeech(tmp_path / "dl" / "LibriSpeech", dataset_parts=list(PARTS), output_dir=tmp_path / "man")
    return tmp_path, truth


def _ids(path):
    return [c.id for c in CutSet.from_file(path)]


def test_fbank_matches_lhotse_fbank(corpus):
    root, truth = corpus
    summary = compute_fbank(root / "man", "librispeech", list(PARTS), root / "fb")
    for part, utts in truth.items():
        cuts = CutSet.from_file(root / "fb" / f"librispeech_cuts_{part}.jsonl.gz")
        assert sorted(c.id for c in cuts) == sorted(utts)  # one cut per utterance, named by it
        assert summary[part].num_cuts == len(utts) and not summary[part].failed
        for cut in cuts:
            audio, sr = sf.read(utts[cut.id]["path"], dtype="float32")
            ref = reference_fbank(audio)
            feats = cut.load_features()
            assert feats.shape == ref.shape == (compute_num_frames(len(audio) / sr, 0.01, sr), 80)
            assert cut.num_frames == len(feats) and cut.num_features == 80
            np.testing.assert_allclose(feats, ref, atol=LILCOM_ATOL)
            assert cut.supervisions[0].text == utts[cut.id]["text"]
            assert cut.features.storage_type == "lilcom_chunky"
            assert cut.features.storage_path.startswith(str(root / "fb" / f"librispeech_feats_{part}"))


def test_speed_perturbation_of_training_parts_only(corpus):
    root, truth = corpus
    compute_fbank(root / "man", "librispeech", list(PARTS), root / "fb", speed_perturb=True)
    train = {c.id: c for c in CutSet.from_file(root / "fb" / "librispeech_cuts_train-clean-100.jsonl.gz")}
    expected = {f"{u}{sfx}" for u in truth["train-clean-100"] for sfx in ("", "_sp0.9", "_sp1.1")}
    assert set(train) == expected
    for utt_id, info in truth["train-clean-100"].items():
        rec = Recording.from_file(info["path"])
        for factor in (0.9, 1.1):
            cut = train[f"{utt_id}_sp{factor}"]
            perturbed = rec.perturb_speed(factor)  # lhotse's own resampling as reference
            assert cut.duration == pytest.approx(perturbed.duration)
            assert cut.num_frames == compute_num_frames(perturbed.duration, 0.01, 16000)
            np.testing.assert_allclose(
                cut.load_features(), reference_fbank(perturbed.load_audio()[0]), atol=LILCOM_ATOL
            )
    assert sorted(_ids(root / "fb" / "librispeech_cuts_dev-clean.jsonl.gz")) == sorted(truth["dev-clean"])


def reverb_reference(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Kaldi wav-reverberate semantics, written out: convolve, start at the RIR's peak, keep the
    length, restore the input power."""
    wet = np.convolve(audio.astype(np.float64), rir)[int(np.argmax(np.abs(rir))):][: len(audio)]
    return (wet * np.sqrt(np.sum(audio.astype(np.float64) ** 2) / np.sum(wet ** 2))).astype(np.float32)


def test_reverberation_of_training_cuts_is_a_convolution_and_reproducible(corpus, monkeypatch):
    import asr_recipes.data.features as features

    monkeypatch.setattr(features, "RIR_POOL_SIZE", 4)  # simulating costs ~50 ms per RIR
    root, truth = corpus
    for out in ("fb", "fb2"):
        compute_fbank(root / "man", "librispeech", list(PARTS), root / out, speed_perturb=True, reverb_prob=0.5)
    train = CutSet.from_file(root / "fb" / "librispeech_cuts_train-clean-100.jsonl.gz")
    again = CutSet.from_file(root / "fb2" / "librispeech_cuts_train-clean-100.jsonl.gz")
    assert [c.id for c in train] == [c.id for c in again]
    for a, b in zip(train, again):
        np.testing.assert_array_equal(a.load_features(), b.load_features())
    reverberant = [c for c in train if c.id.endswith("_rvb")]
    # A share of the 12 cuts (speed copies included), each copy drawn on its own.
    assert 0 < len(reverberant) < len(train)
    assert {c.id.removesuffix("_rvb") for c in train} == {
        f"{u}{sfx}" for u in truth["train-clean-100"] for sfx in ("", "_sp0.9", "_sp1.1")}
    rir_files = sorted((root / "fb" / "librispeech_rirs_train-clean-100").glob("rir-*.wav"))
    assert len(rir_files) == 4
    for cut in reverberant:
        utt_id, _, factor = cut.id.removesuffix("_rvb").partition("_sp")
        rec = Recording.from_file(truth["train-clean-100"][utt_id]["path"])
        dry = (rec.perturb_speed(float(factor)) if factor else rec).load_audio()[0]
        [rir_path] = [t.to_dict()["kwargs"]["rir"]["sources"][0]["source"] for t in cut.recording.transforms
                      if type(t).__name__ == "ReverbWithImpulseResponse"]
        assert Path(rir_path).parent == rir_files[0].parent
        rir, _ = sf.read(rir_path, dtype="float64")
        wet = reference_fbank(reverb_reference(dry, rir))
        np.testing.assert_allclose(cut.load_features(), wet, atol=2 * LILCOM_ATOL)
        assert np.abs(cut.load_features() - reference_fbank(dry)).max() > 1.0  # audibly different
    # Dev parts are never reverberated.
    assert sorted(_ids(root / "fb" / "librispeech_cuts_dev-clean.jsonl.gz")) == sorted(truth["dev-clean"])


def test_fbank_is_idempotent(corpus):
    root, _ = corpus
    compute_fbank(root / "man", "librispeech", ["dev-clean"], root / "fb")
    path = root / "fb" / "librispeech_cuts_dev-clean.jsonl.gz"
    before = path.stat().st_mtime_ns
    again = compute_fbank(root / "man", "librispeech", ["dev-clean"], root / "fb", speed_perturb=True)
    assert again["dev-clean"].reused and again["dev-clean"].num_cuts == len(PARTS["dev-clean"])
    assert path.stat().st_mtime_ns == before


def test_truncated_audio_is_skipped_counted_and_named(corpus, caplog):
    root, truth = corpus
    bad_id = sorted(truth["train-clean-100"])[1]
    bad_path = truth["train-clean-100"][bad_id]["path"]
    truncate(bad_path)
    with caplog.at_level(logging.WARNING):
        summary = compute_fbank(
            root / "man", "librispeech", ["train-clean-100"], root / "fb",
            speed_perturb=True, max_failed_fraction=0.5,
        )
    s = summary["train-clean-100"]
    assert {f.cut_id for f in s.failed} == {bad_id, f"{bad_id}_sp0.9", f"{bad_id}_sp1.1"}
    assert {f.audio_path for f in s.failed} == {str(bad_path)}
    assert s.num_cuts == 3 * (len(truth["train-clean-100"]) - 1)
    written = _ids(s.cuts_path)
    assert len(written) == s.num_cuts and not any(i.startswith(bad_id) for i in written)
    assert sum(str(bad_path) in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 3


def test_too_many_failures_raise_and_write_nothing(corpus):
    root, truth = corpus
    truncate(truth["dev-clean"][sorted(truth["dev-clean"])[0]]["path"])
    with pytest.raises(TooManyFailuresError, match="1 of 2 cuts") as e:
        compute_fbank(root / "man", "librispeech", ["dev-clean"], root / "fb", max_failed_fraction=0.05)
    assert "max_failed_fraction=0.05" in str(e.value)
    assert not (root / "fb" / "librispeech_cuts_dev-clean.jsonl.gz").exists()


def test_missing_manifest_names_prepare_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the prepare stage") as e:
        compute_fbank(tmp_path / "man", "librispeech", ["dev-clean"], tmp_path / "fb")
    assert str(tmp_path / "man" / "librispeech_recordings_dev-clean.jsonl.gz") in str(e.value)


def test_other_sample_rates_are_resampled_to_16k(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(1.3, seed=5, sr=22050), 22050, subtype="PCM_16")
    (tmp_path / "man").mkdir()
    RecordingSet.from_recordings([Recording.from_file(path)]).to_file(tmp_path / "man" / "toy_recordings_x.jsonl.gz")
    compute_fbank(tmp_path / "man", "toy", ["x"], tmp_path / "fb")
    (cut,) = CutSet.from_file(tmp_path / "fb" / "toy_cuts_x.jsonl.gz")
    reference = reference_fbank(Recording.from_file(path).resample(16000).load_audio()[0])
    assert cut.sampling_rate == 16000
    np.testing.assert_allclose(cut.load_features(), reference, atol=LILCOM_ATOL)


def test_noise_recordings_are_cut_into_windows(tmp_path):
    (tmp_path / "man").mkdir()
    paths = []
    for i, duration in enumerate([2.5, 0.5]):
        paths.append(tmp_path / f"n{i}.wav")
        sf.write(paths[-1], tone(duration, seed=i), 16000, subtype="PCM_16")
    RecordingSet.from_recordings(Recording.from_file(p) for p in paths).to_file(
        tmp_path / "man" / "musan_recordings_noise.jsonl.gz"
    )
    compute_fbank(tmp_path / "man", "musan", ["noise"], tmp_path / "fb", cut_window=1.0)
    cuts = CutSet.from_file(tmp_path / "fb" / "musan_cuts_noise.jsonl.gz")
    # 2.5 s -> windows of 1.0, 1.0 (+ a 0.5 s tail, dropped); the 0.5 s file is dropped.
    assert sorted(round(c.duration, 3) for c in cuts) == [1.0, 1.0]
    assert all(c.has_features and not c.supervisions for c in cuts)


@pytest.mark.slow  # ~20 s: each spawned worker imports torch and lhotse
def test_fbank_cli_with_two_processes(corpus, monkeypatch):
    """The entry point runs, including its spawned workers (num_jobs=2)."""
    root, truth = corpus
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "argv", [
        "fbank", "corpus=librispeech", "manifest_dir=man", "out_dir=fb",
        "parts=[train-clean-100]", "num_jobs=2", "speed_perturb=true",
    ])
    runpy.run_module("asr_recipes.bin.fbank", run_name="__main__", alter_sys=True)
    path = root / "fb" / "librispeech_cuts_train-clean-100.jsonl.gz"
    with gzip.open(path, "rt") as f:
        assert sum(1 for _ in f) == 3 * len(truth["train-clean-100"])
    assert len(list((root / "fb" / "librispeech_feats_train-clean-100").glob("feats-*.lca"))) == 2
    cuts = CutSet.from_file(path)
    for cut in (c for c in cuts if "_sp" not in c.id):
        audio, _ = sf.read(truth["train-clean-100"][cut.id]["path"], dtype="float32")
        np.testing.assert_allclose(cut.load_features(), reference_fbank(audio), atol=LILCOM_ATOL)
