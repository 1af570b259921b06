"""Synthesized-speech corpora: layouts read by lhotse's own recipes, determinism,
idempotence, held-out sentences and speakers, and the missing-tool error.

Needs espeak-ng and sox (``apt-get install espeak-ng sox``); tiny corpora take about a
second each.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
from lhotse.recipes import prepare_aishell, prepare_librispeech

from asr_recipes.data.corpora.synthetic import (
    MARKER_NAME,
    SynthesisError,
    Utterance,
    plan_aishell,
    plan_librispeech,
    render,
    split_sizes,
    synthesize,
    synthesize_aishell_layout,
    synthesize_librispeech_layout,
    to_pinyin,
)
from asr_recipes.data.corpora.synthetic_text import GRAMMARS

REPO = Path(__file__).resolve().parents[2]
LIBRISPEECH_PARTS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def check_audio(path: Path) -> None:
    info = soundfile.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path
    assert 1.5 <= info.duration <= 5.0, (path, info.duration)


@pytest.fixture(scope="module")
def tiny_librispeech(tmp_path_factory) -> Path:
    return synthesize_librispeech_layout(tmp_path_factory.mktemp("ls"), size="tiny")


@pytest.fixture(scope="module")
def tiny_aishell(tmp_path_factory) -> Path:
    return synthesize_aishell_layout(tmp_path_factory.mktemp("aishell"), size="tiny")


def test_librispeech_layout_is_read_by_lhotse(tiny_librispeech):
    root = tiny_librispeech
    assert root.name == "LibriSpeech"
    manifests = prepare_librispeech(root)
    assert set(manifests) == set(LIBRISPEECH_PARTS.values())

    # Transcripts as written on disk, parsed here independently of the library.
    written = {}
    for trans in root.rglob("*.trans.txt"):
        spk, chapter = trans.name[: -len(".trans.txt")].split("-")
        assert trans.parent.name == chapter and trans.parent.parent.name == spk
        for line in trans.read_text().splitlines():
            utt_id, text = line.split(" ", 1)
            assert utt_id.startswith(f"{spk}-{chapter}-")
            written[utt_id] = text

    vocabulary = GRAMMARS["commands"].vocabulary()
    speakers = {}
    for split, part in LIBRISPEECH_PARTS.items():
        recordings = manifests[part]["recordings"]
        supervisions = manifests[part]["supervisions"]
        assert len(recordings) == len(supervisions) == split_sizes("tiny")[split]
        for sup in supervisions:
            assert sup.text == written[sup.id]
            assert sup.text == sup.text.upper() and set(sup.text.split()) <= vocabulary
            assert re.fullmatch(r"\d+", sup.speaker)
            assert sup.duration == pytest.approx(recordings[sup.id].duration)
        for rec in recordings:
            path = Path(rec.sources[0].source)
            rel = path.relative_to(root).as_posix()
            assert re.fullmatch(rf"{part}/(\d+)/(\d+)/\1-\2-\d{{4}}\.flac", rel), rel
            check_audio(path)
        speakers[split] = {sup.speaker for sup in supervisions}
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])
    assert not speakers["dev"] & speakers["test"]


def test_aishell_layout_is_read_by_lhotse(tiny_aishell):
    root = tiny_aishell
    assert root.name == "data_aishell"
    transcript = root / "transcript" / "aishell_transcript_v0.8.txt"
    words = dict(line.split(" ", 1) for line in transcript.read_text("utf-8").splitlines())
    manifests = prepare_aishell(root.parent)  # takes the parent of data_aishell/
    vocabulary = GRAMMARS["mandarin"].vocabulary()
    for split in ("train", "dev", "test"):
        recordings = manifests[split]["recordings"]
        supervisions = manifests[split]["supervisions"]
        assert len(recordings) == len(supervisions) == split_sizes("tiny")[split]
        for sup in supervisions:
            assert re.fullmatch(r"BAC009(S\d{4})W\d{4}", sup.id).group(1) == sup.speaker
            assert sup.text == words[sup.id].replace(" ", "")  # lhotse drops the spaces
            assert set(words[sup.id].split()) <= vocabulary
        for rec in recordings:
            path = Path(rec.sources[0].source)
            assert path.parent.parent == root / "wav" / split
            check_audio(path)


def test_rerun_is_byte_identical_idempotent_and_redoes_partial_runs(tiny_librispeech, tmp_path):
    reference = file_hashes(tiny_librispeech)
    assert any(name.endswith(".flac") for name in reference)

    # Same options elsewhere: byte-identical files (the marker included).
    again = synthesize_librispeech_layout(tmp_path, size="tiny", num_jobs=1)
    assert file_hashes(again) == reference

    # Complete and same options: nothing is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in again.rglob("*")}
    synthesize_librispeech_layout(tmp_path, size="tiny")
    assert {p: p.stat().st_mtime_ns for p in again.rglob("*")} == stamps

    # A run killed half way (marker not complete, files missing, a stray file): redone.
    marker = json.loads((again / MARKER_NAME).read_text())
    (again / MARKER_NAME).write_text(json.dumps({**marker, "complete": False}))
    next(again.rglob("*.flac")).unlink()
    next(again.rglob("*.trans.txt")).unlink()
    stray = again / "dev-clean" / "9999" / "999901" / "9999-999901-0000.flac"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"not audio")
    synthesize_librispeech_layout(tmp_path, size="tiny")
    assert file_hashes(again) == reference

    # Other options in the same place replace the corpus entirely.
    synthesize_librispeech_layout(tmp_path, size="tiny", seed=1)
    replaced = file_hashes(again)
    flacs = [name for name in replaced if name.endswith(".flac")]
    assert len(flacs) == sum(split_sizes("tiny").values())
    assert all(replaced[name] != reference.get(name) for name in flacs)  # new voices


def test_refuses_to_overwrite_a_corpus_it_did_not_write(tmp_path):
    foreign = tmp_path / "LibriSpeech" / "dev-clean" / "84" / "121123" / "84-121123.trans.txt"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("84-121123-0000 GO DO YOU HEAR\n")
    with pytest.raises(SynthesisError, match="not written by synthesize"):
        synthesize_librispeech_layout(tmp_path, size="tiny")
    assert foreign.read_text() == "84-121123-0000 GO DO YOU HEAR\n"


@pytest.mark.parametrize("task", ["commands", "sentences", "mandarin"])
def test_held_out_sentences_are_unseen_but_their_words_are_not(task):
    plan = plan_aishell("full", 0) if task == "mandarin" else plan_librispeech(task, "full", 0)
    texts: dict[str, list[str]] = {}
    for utt in plan:
        texts.setdefault(utt.split, []).append(utt.text)
    train, dev, test = (texts[s] for s in sorted(texts, key=lambda s: ("tr" not in s, s)))
    assert (len(train), len(dev), len(test)) == (2500, 200, 200)
    assert not set(train) & set(dev) and not set(train) & set(test) and not set(dev) & set(test)
    train_words = {w for t in train for w in t.split()}
    assert {w for t in dev + test for w in t.split()} <= train_words
    # Enough variety that held-out sentences are a real test, not a handful of repeats.
    assert len(set(dev)) > 100 and len(set(test)) > 100

    vocabulary = GRAMMARS[task].vocabulary()
    expected = {"commands": (35, 55), "sentences": (250, 350), "mandarin": (60, 200)}[task]
    assert expected[0] <= len(vocabulary) <= expected[1]


def test_plans_are_seeded():
    first = plan_librispeech("sentences", 20, seed=0)
    assert plan_librispeech("sentences", 20, seed=0) == first
    other = plan_librispeech("sentences", 20, seed=1)
    assert [u.text for u in other] != [u.text for u in first]


def test_speakers_are_many_distinct_and_unseen_in_dev_test(tmp_path):
    plan = plan_librispeech("commands", "full", 0)
    speakers = {}
    for utt in plan:
        speakers.setdefault(utt.split, set()).add(utt.speaker)
    train, dev, test = (speakers[LIBRISPEECH_PARTS[s]] for s in ("train", "dev", "test"))
    assert len(train) >= 24 and len(dev) >= 4 and len(test) >= 4
    timbres = {split: {(s.voice, s.variant) for s in group}
               for split, group in (("train", train), ("dev", dev), ("test", test))}
    assert not timbres["train"] & (timbres["dev"] | timbres["test"])
    assert not timbres["dev"] & timbres["test"]
    everyone = train | dev | test
    assert len({(s.voice, s.variant, s.speed, s.pitch) for s in everyone}) == len(everyone)
    assert all(s.speaker_id.isdigit() for s in everyone)

    # espeak-ng silently falls back to its default for an unknown variant: check that
    # every variant is installed and every speaker sounds different.
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True,
                             text=True, check=True).stdout
    installed = set(re.findall(r"!v/(\S+)", listing))
    assert {s.variant for s in everyone} <= installed
    one_each = {}
    for utt in plan:
        one_each.setdefault(utt.speaker, utt)
    same_text = [Utterance(u.split, f"u{i}", f"u{i}.wav", "x", "one two three", u.speaker)
                 for i, u in enumerate(one_each.values())]
    for utt in same_text:
        render(utt, tmp_path)
    audio = {hashlib.sha256((tmp_path / u.relpath).read_bytes()).hexdigest() for u in same_text}
    assert len(audio) == len(same_text)


@pytest.mark.parametrize("layout,task", [("librispeech", "commands"),
                                         ("librispeech", "sentences"), ("aishell", None)])
def test_durations_stay_between_1_5_and_5_seconds(tmp_path, layout, task):
    root = synthesize(layout, tmp_path, task=task, size=25, num_jobs=2)
    files = list(root.rglob("*.flac" if layout == "librispeech" else "*.wav"))
    assert len(files) == 75
    for path in files:
        check_audio(path)


def test_pinyin_uses_word_readings():
    # References written by hand; 乐 and 行 have two readings each.
    assert to_pinyin("我们 明天 去 公园") == "wo3 men5 ming2 tian1 qu4 gong1 yuan2"
    assert to_pinyin("听 音乐") == "ting1 yin1 yue4"
    assert to_pinyin("银行") == "yin2 hang2"


def test_bad_options_raise_clear_errors(tmp_path):
    with pytest.raises(SynthesisError, match="size='huge'"):
        synthesize("librispeech", tmp_path, size="huge")
    with pytest.raises(SynthesisError, match="size=0"):
        synthesize("librispeech", tmp_path, size=0)
    with pytest.raises(SynthesisError, match="task='mandarin'"):
        synthesize("librispeech", tmp_path, task="mandarin")
    with pytest.raises(SynthesisError, match="task=mandarin"):
        synthesize("aishell", tmp_path, task="commands")
    with pytest.raises(SynthesisError, match="layout='timit'"):
        synthesize("timit", tmp_path)
    assert not any(tmp_path.iterdir())


def run_entry_point(args: list[str], path: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path}
    return subprocess.run([sys.executable, "-m", "asr_recipes.bin.synthesize", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_entry_point_writes_the_corpus(tmp_path):
    done = run_entry_point([f"out_dir={tmp_path}", "task=sentences", "size=tiny"],
                           os.environ["PATH"])
    assert done.returncode == 0, done.stderr
    lines = [line for trans in (tmp_path / "LibriSpeech").rglob("*.trans.txt")
             for line in trans.read_text().splitlines()]
    assert len(lines) == sum(split_sizes("tiny").values())
    vocabulary = GRAMMARS["sentences"].vocabulary()
    assert all(set(line.split()[1:]) <= vocabulary for line in lines)


def test_missing_tools_give_install_advice_and_nonzero_exit(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    done = run_entry_point([f"out_dir={tmp_path / 'corpus'}", "size=tiny"], str(empty))
    assert done.returncode != 0
    assert "apt-get install espeak-ng sox" in done.stderr
    assert not (tmp_path / "corpus").exists()
