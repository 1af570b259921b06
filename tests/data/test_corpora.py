"""Corpus preparation: manifests match lhotse's own preparers; layout errors name the path."""

import runpy
import sys
from pathlib import Path

import pytest
from lhotse import load_manifest
from lhotse.audio.utils import AudioLoadingError
from lhotse.recipes.aishell import prepare_aishell
from lhotse.recipes.librispeech import prepare_librispeech
from lhotse.recipes.musan import prepare_musan

from asr_recipes.data.corpora import CorpusLayoutError, available_corpora, get_corpus
from tests.data.corpus_layouts import write_aishell, write_librispeech, write_musan

LS_PARTS = {"train-clean-100": [1.0, 1.5, 2.0], "dev-clean": [1.2, 0.8]}


def _recording_view(recordings):
    return {r.id: (r.sources[0].source, r.num_samples, r.sampling_rate) for r in recordings}


def _supervision_view(supervisions):
    return {s.id: (s.recording_id, s.text, s.speaker, s.duration) for s in supervisions}


@pytest.fixture
def librispeech_dir(tmp_path):
    dl = tmp_path / "dl"
    truth = write_librispeech(dl, LS_PARTS)
    return dl, truth


def test_librispeech_prepare_matches_lhotse(librispeech_dir, tmp_path, monkeypatch):
    dl, truth = librispeech_dir
    monkeypatch.chdir(tmp_path)  # relative paths in, absolute audio paths out
    got = get_corpus("librispeech").prepare(Path("dl"), Path("manifests"), list(LS_PARTS))
    ref = prepare_librispeech(dl / "LibriSpeech", dataset_parts=list(LS_PARTS))
    for part in LS_PARTS:
        recs = load_manifest(tmp_path / "manifests" / f"librispeech_recordings_{part}.jsonl.gz")
        sups = load_manifest(tmp_path / "manifests" / f"librispeech_supervisions_{part}.jsonl.gz")
        assert _recording_view(recs) == _recording_view(ref[part]["recordings"])
        assert _supervision_view(sups) == _supervision_view(ref[part]["supervisions"])
        assert _recording_view(got[part]["recordings"]) == _recording_view(recs)
        assert len(recs) == len(truth[part])
        for r in recs:
            assert Path(r.sources[0].source).is_absolute()
            assert Path(r.sources[0].source) == truth[part][r.id]["path"].absolute()
        assert {s.id: s.text for s in sups} == {u: t["text"] for u, t in truth[part].items()}
    assert not [p for p in (tmp_path / "manifests").iterdir() if p.name.startswith(".")]


def test_librispeech_prepare_is_idempotent(librispeech_dir, tmp_path):
    dl, _ = librispeech_dir
    corpus = get_corpus("librispeech")
    corpus.prepare(dl, tmp_path / "m", ["dev-clean"])
    path = tmp_path / "m" / "librispeech_recordings_dev-clean.jsonl.gz"
    before = path.stat().st_mtime_ns
    again = corpus.prepare(dl, tmp_path / "m", ["dev-clean"])
    assert path.stat().st_mtime_ns == before
    assert len(again["dev-clean"]["recordings"]) == len(LS_PARTS["dev-clean"])


def test_librispeech_prepare_ignores_partial_old_output(librispeech_dir, tmp_path):
    """A half-written earlier run (recordings without supervisions) is redone, not mixed in."""
    dl, truth = librispeech_dir
    out = tmp_path / "m"
    out.mkdir()
    stale = out / "librispeech_recordings_dev-clean.jsonl.gz"
    stale.write_bytes(b"not a manifest")
    got = get_corpus("librispeech").prepare(dl, out, ["dev-clean"])
    assert set(got["dev-clean"]["recordings"].ids) == set(truth["dev-clean"])


def test_librispeech_missing_corpus_names_expected_path(tmp_path):
    with pytest.raises(CorpusLayoutError) as e:
        get_corpus("librispeech").prepare(tmp_path / "nowhere", tmp_path / "m", ["train-clean-100"])
    msg = str(e.value)
    assert f"{tmp_path / 'nowhere' / 'LibriSpeech' / 'train-clean-100'}/<speaker>/<chapter>/*.flac" in msg
    assert "download=true" in msg and "ln -s" in msg
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())


def test_librispeech_dl_dir_pointing_inside_corpus_gets_hint(librispeech_dir, tmp_path):
    dl, _ = librispeech_dir
    with pytest.raises(CorpusLayoutError, match="must be the parent of the LibriSpeech/"):
        get_corpus("librispeech").prepare(dl / "LibriSpeech", tmp_path / "m", ["dev-clean"])


def test_librispeech_flat_layout_is_rejected(tmp_path):
    part = tmp_path / "dl" / "LibriSpeech" / "dev-clean"
    part.mkdir(parents=True)
    (part / "1-2-0000.flac").write_bytes(b"")
    with pytest.raises(CorpusLayoutError, match="wrong layout") as e:
        get_corpus("librispeech").prepare(tmp_path / "dl", tmp_path / "m", ["dev-clean"])
    assert str(part) in str(e.value)


def test_unknown_part_and_corpus(tmp_path):
    with pytest.raises(ValueError, match="train-clean-101"):
        get_corpus("librispeech").prepare(tmp_path, tmp_path / "m", ["train-clean-101"])
    with pytest.raises(ValueError, match="available corpora: aishell, librispeech, musan"):
        get_corpus("timit")
    assert available_corpora() == ["aishell", "librispeech", "musan"]


def test_aishell_prepare_matches_lhotse(tmp_path):
    truth = write_aishell(tmp_path / "dl")
    got = get_corpus("aishell").prepare(tmp_path / "dl", tmp_path / "m", ["train", "dev", "test"])
    ref = prepare_aishell(tmp_path / "dl" / "aishell")
    for split, utts in truth.items():
        sups = load_manifest(tmp_path / "m" / f"aishell_supervisions_{split}.jsonl.gz")
        recs = load_manifest(tmp_path / "m" / f"aishell_recordings_{split}.jsonl.gz")
        assert _supervision_view(sups) == _supervision_view(ref[split]["supervisions"])
        assert _recording_view(recs) == _recording_view(ref[split]["recordings"])
        assert _recording_view(got[split]["recordings"]) == _recording_view(recs)
        # Character-level text: the words' spaces are gone.
        assert {s.id: s.text for s in sups} == {u: t["text"].replace(" ", "") for u, t in utts.items()}
        assert {r.id: Path(r.sources[0].source) for r in recs} == {u: t["path"] for u, t in utts.items()}


def test_aishell_missing_split_names_expected_path(tmp_path):
    write_aishell(tmp_path / "dl")
    test_dir = tmp_path / "dl" / "aishell" / "data_aishell" / "wav" / "test"
    for wav in test_dir.rglob("*.wav"):
        wav.unlink()
    with pytest.raises(CorpusLayoutError) as e:
        get_corpus("aishell").prepare(tmp_path / "dl", tmp_path / "m", ["train"])
    assert f"{test_dir}/<speaker>/<utt_id>.wav" in str(e.value)


def test_aishell_missing_transcript_names_expected_path(tmp_path):
    with pytest.raises(CorpusLayoutError) as e:
        get_corpus("aishell").prepare(tmp_path / "dl", tmp_path / "m", ["dev"])
    assert str(tmp_path / "dl/aishell/data_aishell/transcript/aishell_transcript_v0.8.txt") in str(e.value)


def test_musan_prepare_matches_lhotse(tmp_path):
    truth = write_musan(tmp_path / "dl", {"music": [2.0], "noise": [1.5, 3.0], "speech": [2.5]})
    spec = get_corpus("musan")
    assert spec.cut_window is not None and not spec.is_train_part("noise")
    got = spec.prepare(tmp_path / "dl", tmp_path / "m", ["music", "noise", "speech"])
    ref = prepare_musan(tmp_path / "dl" / "musan", parts=["music", "noise", "speech"])
    for part, paths in truth.items():
        recs = load_manifest(tmp_path / "m" / f"musan_recordings_{part}.jsonl.gz")
        assert _recording_view(recs) == _recording_view(ref[part]["recordings"])
        assert {Path(r.sources[0].source) for r in got[part]["recordings"]} == set(paths)
    assert not list((tmp_path / "m").glob("musan_supervisions_*"))


def _run_prepare_cli(monkeypatch, *overrides):
    """Run the Hydra entry point in-process, as ``python -m asr_recipes.bin.prepare`` would."""
    monkeypatch.setattr(sys, "argv", ["prepare", *overrides])
    runpy.run_module("asr_recipes.bin.prepare", run_name="__main__", alter_sys=True)


def test_prepare_cli_exits_with_layout_error_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        _run_prepare_cli(monkeypatch, "corpus=librispeech", "dl_dir=none", "out_dir=m", "parts=[dev-clean]")
    assert f"{tmp_path / 'none' / 'LibriSpeech' / 'dev-clean'}/<speaker>" in str(e.value.code)


def test_prepare_cli_writes_manifests(librispeech_dir, tmp_path, monkeypatch):
    dl, truth = librispeech_dir
    monkeypatch.chdir(tmp_path)
    _run_prepare_cli(monkeypatch, "corpus=librispeech", "dl_dir=dl", "out_dir=m", "parts=[dev-clean]")
    recs = load_manifest(tmp_path / "m" / "librispeech_recordings_dev-clean.jsonl.gz")
    assert set(recs.ids) == set(truth["dev-clean"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dl", "m"]  # Hydra wrote nothing


def test_download_skips_corpora_already_on_disk(librispeech_dir, tmp_path):
    """No network here: each download() must return without fetching anything."""
    dl, _ = librispeech_dir
    assert get_corpus("librispeech").download(dl, ["dev-clean"]) == dl.absolute() / "LibriSpeech"
    write_aishell(tmp_path / "a")
    assert get_corpus("aishell").download(tmp_path / "a", ["dev"]) == (tmp_path / "a" / "aishell").absolute()
    write_musan(tmp_path / "m", {"music": [1.0], "noise": [1.0], "speech": [1.0]})
    assert get_corpus("musan").download(tmp_path / "m", ["noise"]) == (tmp_path / "m" / "musan").absolute()


def test_unreadable_audio_during_preparation_names_the_fix(librispeech_dir, tmp_path):
    dl, truth = librispeech_dir
    bad = next(iter(truth["dev-clean"].values()))["path"]
    bad.write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioLoadingError, match="re-download or remove it") as e:
        get_corpus("librispeech").prepare(dl, tmp_path / "m", ["dev-clean"])
    assert str(bad) in str(e.value)
    assert not list((tmp_path / "m").glob("*.jsonl.gz"))


def test_librispeech_lm_text_is_fetched_whole_once(tmp_path, monkeypatch):
    """From a file:// URL standing in for openslr.org (no network here): the .part file is
    renamed once complete, and a second call finds the file and fetches nothing."""
    import gzip

    import asr_recipes.data.corpora.librispeech as librispeech

    source = tmp_path / "served.txt.gz"
    with gzip.open(source, "wt", encoding="utf-8") as f:
        f.write("THE FIRST SENTENCE\nAND THE SECOND\n")
    monkeypatch.setattr(librispeech, "LM_TEXT_URL", source.as_uri())
    corpus = get_corpus("librispeech")
    path = corpus.download_lm_text(tmp_path / "dl")
    assert path == (tmp_path / "dl" / "lm" / "librispeech-lm-norm.txt.gz").absolute()
    assert path.read_bytes() == source.read_bytes() and sorted(p.name for p in path.parent.iterdir()) == [path.name]
    source.unlink()  # nothing to fetch from any more: the file on disk is used
    assert corpus.download_lm_text(tmp_path / "dl") == path
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        _run_prepare_cli(monkeypatch, "corpus=musan", "dl_dir=dl", "out_dir=m", "lm_text=true")
    assert "musan has no language-model text" in str(e.value.code)
