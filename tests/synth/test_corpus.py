"""Synthesized-speech corpora: layouts read by lhotse's own recipes, determinism,
idempotence, held-out sentences, speakers and voices, the noisy part's SNR, and the
missing-tool errors.

Needs espeak-ng, flite and sox (``apt-get install espeak-ng flite sox``); tiny corpora take
a few seconds each.
"""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from lhotse.recipes import prepare_aishell, prepare_librispeech, prepare_musan

from asr_recipes.synth.corpus import (
    MARKER_NAME,
    SILENCE_MARGINS,
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
from asr_recipes.synth.text import GRAMMARS, write_training_text

REPO = Path(__file__).resolve().parents[2]
LIBRISPEECH_PARTS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
#: Every part of the default corpus and the sentence split it draws from.
ALL_PARTS = {"train-clean-100": "train", "dev-clean": "dev", "test-clean": "test", "dev-unseen": "dev",
             "test-unseen": "test", "test-other": "test"}


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
    assert {p.name for p in root.iterdir() if p.is_dir()} == set(ALL_PARTS)
    manifests = prepare_librispeech(root, dataset_parts=list(ALL_PARTS))

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
    for part, split in ALL_PARTS.items():
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
        speakers[part] = {sup.speaker for sup in supervisions}
    for a in ALL_PARTS:  # every part has its own speaker ids
        assert all(not speakers[a] & speakers[b] for b in ALL_PARTS if b != a)
    # The unseen-voice and noisy parts say the test sentences of test-clean (dev-unseen: dev-clean's).
    texts = {part: sorted(s.text for s in manifests[part]["supervisions"]) for part in ALL_PARTS}
    assert texts["test-unseen"] == texts["test-clean"] == texts["test-other"]
    assert texts["dev-unseen"] == texts["dev-clean"]

    noise = prepare_musan(root.parent / "musan", parts=["noise", "speech"])  # the generated noise
    assert len(noise["noise"]["recordings"]) == 20 and len(noise["speech"]["recordings"]) == 8
    for rec in noise["noise"]["recordings"]:
        assert rec.sampling_rate == 16000 and rec.duration == pytest.approx(8.0)


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
    noise_reference = file_hashes(tiny_librispeech.parent / "musan")
    assert any(name.endswith(".flac") for name in reference)
    assert any(name.startswith("test-other/") for name in reference)
    assert len([n for n in noise_reference if n.endswith(".wav")]) == 28

    # Same options elsewhere: byte-identical files (the markers included).
    again = synthesize_librispeech_layout(tmp_path, size="tiny", num_jobs=1)
    assert file_hashes(again) == reference
    assert file_hashes(tmp_path / "musan") == noise_reference

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
    assert len(flacs) == sum(split_sizes("tiny")[split] for split in ALL_PARTS.values())
    assert all(replaced[name] != reference.get(name) for name in flacs)  # new voices

    # Options that leave out parts delete them (no stale part from an earlier corpus).
    synthesize_librispeech_layout(tmp_path, size="tiny", heldout_voice=None, noisy_snr=None, noise_corpus=False)
    assert {p.name for p in again.iterdir() if p.is_dir()} == set(LIBRISPEECH_PARTS.values())


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
    names = ("train", "dev", "test") if task == "mandarin" else tuple(LIBRISPEECH_PARTS.values())
    train, dev, test = (texts[s] for s in names)
    assert (len(train), len(dev), len(test)) == (split_sizes("full")["train"], 200, 200)
    assert not set(train) & set(dev) and not set(train) & set(test) and not set(dev) & set(test)
    train_words = {w for t in train for w in t.split()}
    assert {w for t in dev + test for w in t.split()} <= train_words
    # Enough variety that held-out sentences are a real test, not a handful of repeats.
    assert len(set(dev)) > 100 and len(set(test)) > 100

    vocabulary = GRAMMARS[task].vocabulary()
    expected = {"commands": (35, 55), "sentences": (250, 350), "mandarin": (60, 200)}[task]
    assert expected[0] <= len(vocabulary) <= expected[1]


@pytest.mark.parametrize("task", ["commands", "sentences", "mandarin"])
def test_lm_training_text_holds_no_dev_or_test_sentence(task, tmp_path):
    """The LM text of a corpus synthesized with seed 3: sentences of the generator's train split,
    none of them spoken in a dev or test part of that corpus (every part planned, unseen voice too);
    each sentence's split recomputed from the rule the generator documents (a SHA-256 bucket of
    "<seed>\\t<sentence>" out of 20: 0 dev, 1 test)."""
    seed = 3
    path = write_training_text(tmp_path / "lm.txt", task, 3000, seed)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3000 and len(set(lines)) > 500  # varied text, repeats allowed
    buckets = {int.from_bytes(hashlib.sha256(f"{seed}\t{t}".encode()).digest()[:8], "big") % 20 for t in lines}
    assert not buckets & {0, 1}
    plan = plan_aishell("full", seed) if task == "mandarin" else plan_librispeech(task, "full", seed)
    held_out = {u.text for u in plan if ALL_PARTS.get(u.split, u.split) in ("dev", "test")}
    assert len(held_out) > 200 and not set(lines) & held_out
    with pytest.raises(ValueError, match="unknown task"):
        write_training_text(tmp_path / "x.txt", "weather", 10, seed)


def test_plans_are_seeded():
    first = plan_librispeech("sentences", 20, seed=0)
    assert plan_librispeech("sentences", 20, seed=0) == first
    other = plan_librispeech("sentences", 20, seed=1)
    assert [u.text for u in other] != [u.text for u in first]


def test_speakers_are_many_distinct_and_voices_held_out_as_planned(tmp_path):
    plan = plan_librispeech("commands", "full", 0)
    speakers = {}
    for utt in plan:
        speakers.setdefault(utt.split, set()).add(utt.speaker)
    espeak = {part: {s for s in group if s.engine == "espeak-ng"} for part, group in speakers.items()}
    flite = {part: {s for s in group if s.engine == "flite"} for part, group in speakers.items()}
    assert len(espeak["train-clean-100"]) >= 24 and len(espeak["dev-clean"]) >= 4 and len(espeak["test-clean"]) >= 4
    # espeak-ng: dev/test timbres are unseen in training and differ between dev and test.
    timbres = {part: {(s.voice, s.variant) for s in espeak[part]} for part in LIBRISPEECH_PARTS.values()}
    assert not timbres["train-clean-100"] & (timbres["dev-clean"] | timbres["test-clean"])
    assert not timbres["dev-clean"] & timbres["test-clean"]
    # flite: the seen voices speak in training and the clean dev/test parts, awb only in the unseen parts.
    voices = {part: {s.voice for s in group} for part, group in flite.items()}
    for part in ("train-clean-100", "dev-clean", "test-clean"):
        assert voices[part] == {"kal16", "rms", "slt"}, part
    assert voices["dev-unseen"] == voices["test-unseen"] == {"awb"}
    assert {s.engine for s in speakers["dev-unseen"] | speakers["test-unseen"]} == {"flite"}
    # test-other repeats test-clean's voices under its own speaker ids; everybody else is distinct.
    key = lambda s: (s.engine, s.voice, s.variant, s.speed, s.pitch)  # noqa: E731
    assert sorted(map(key, speakers["test-other"])) == sorted(map(key, speakers["test-clean"]))
    everyone = [s for part, group in speakers.items() if part != "test-other" for s in group]
    assert len({key(s) for s in everyone}) == len(everyone)
    assert all(s.speaker_id.isdigit() for group in speakers.values() for s in group)
    # The flite share of the training utterances follows the speakers: 36 of 68.
    train = [u for u in plan if u.split == "train-clean-100"]
    assert sum(u.speaker.engine == "flite" for u in train) / len(train) == pytest.approx(36 / 68, abs=0.01)

    # espeak-ng silently falls back to its default for an unknown variant: check that
    # every variant is installed and every speaker sounds different.
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True,
                             text=True, check=True).stdout
    installed = set(re.findall(r"!v/(\S+)", listing))
    assert {s.variant for s in everyone if s.engine == "espeak-ng"} <= installed
    one_each = {}
    for utt in plan:
        if utt.split != "test-other":
            one_each.setdefault(utt.speaker, utt)
    same_text = [Utterance(u.split, f"u{i}", f"u{i}.wav", "x", "one two three", u.speaker)
                 for i, u in enumerate(one_each.values())]
    for utt in same_text:
        render(utt, tmp_path)
    audio = {hashlib.sha256((tmp_path / u.relpath).read_bytes()).hexdigest() for u in same_text}
    assert len(audio) == len(same_text)


def median_f0(samples: np.ndarray, rate: int) -> float:
    """Median pitch (Hz) of the loud frames by autocorrelation (60-400 Hz), written out here."""
    frame, found = int(0.04 * rate), []
    level = np.sqrt(np.mean(samples ** 2))
    for start in range(0, len(samples) - frame, frame // 2):
        w = samples[start:start + frame] * np.hanning(frame)
        if np.sqrt(np.mean(w ** 2)) < 0.3 * level:
            continue
        ac = np.correlate(w, w, "full")[frame - 1:]
        lo, hi = rate // 400, rate // 60
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            found.append(rate / lag)
    return float(np.median(found))


def speak(tmp_path, speaker, text="please turn off the lights in the kitchen") -> tuple[np.ndarray, int]:
    utt = Utterance("x", "u", f"{speaker.voice}-{speaker.speed}-{speaker.pitch}.flac", text.upper(), text, speaker)
    render(utt, tmp_path)
    return soundfile.read(str(tmp_path / utt.relpath))


def test_flite_voices_are_other_people_than_espeak(tmp_path):
    from asr_recipes.synth.voices import Speaker, synthesize_wav

    flite = {v: Speaker("1", v, "", 100, 0, engine="flite") for v in ("kal16", "awb", "rms", "slt")}
    espeak = Speaker("2", "en-us", "m3", 160, 50)
    # Which program made the audio: espeak-ng writes 22.05 kHz, flite's voices 16 kHz.
    assert soundfile.info(io.BytesIO(synthesize_wav(espeak, "one two"))).samplerate == 22050
    for speaker in flite.values():
        assert soundfile.info(io.BytesIO(synthesize_wav(speaker, "one two"))).samplerate == 16000
    # Each voice is its own person (flite would fall back to kal for an unknown name): slt is a
    # woman, rms and kal16 are men; all four renderings of one sentence differ.
    f0 = {v: median_f0(*speak(tmp_path, s)) for v, s in flite.items()}
    assert f0["slt"] > 150 > max(f0["rms"], f0["kal16"]), f0
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.glob("*.flac")}) == 4


def test_flite_speakers_differ_by_sox_tempo_and_pitch(tmp_path):
    from asr_recipes.synth.voices import Speaker

    base, base_rate = speak(tmp_path, Speaker("1", "rms", "", 100, 0, engine="flite"))
    slow, _ = speak(tmp_path, Speaker("1", "rms", "", 85, 0, engine="flite"))
    high, _ = speak(tmp_path, Speaker("1", "rms", "", 100, 300, engine="flite"))
    assert len(slow) / len(base) == pytest.approx(1 / 0.85, rel=0.03)
    assert len(high) == pytest.approx(len(base), rel=0.01)
    assert median_f0(high, base_rate) / median_f0(base, base_rate) == pytest.approx(2 ** (300 / 1200), rel=0.05)


def test_training_flite_speakers_get_their_own_intonation_mean():
    from asr_recipes.synth.voices import (FLITE_F0_RANGE, FLITE_F0_VOICES, Speaker,
                                                           make_flite_speakers, synthesize_wav)

    text = "please turn off the lights in the kitchen"
    for voice in FLITE_F0_VOICES:  # flite's intonation aims at the mean it is given
        low, high = (soundfile.read(io.BytesIO(synthesize_wav(Speaker("1", voice, "", 100, 0, "flite", f0), text)))
                     for f0 in (100, 180))
        assert median_f0(*high) / median_f0(*low) == pytest.approx(1.8, rel=0.2), voice
    # rms ignores it: byte-identical output, hence not in FLITE_F0_VOICES.
    rms = {synthesize_wav(Speaker("1", "rms", "", 100, 0, "flite", f0), text) for f0 in (0, 100, 180)}
    assert len(rms) == 1
    for voice in ("slt", "rms"):
        speakers = make_flite_speakers(voice, {"train": 12, "dev": 2, "test": 2}, seed=0)
        f0s = [s.f0 for s in speakers["train"]]
        if voice in FLITE_F0_VOICES:
            assert all(FLITE_F0_RANGE[0] <= f <= FLITE_F0_RANGE[1] for f in f0s) and len(set(f0s)) >= 8
        else:
            assert set(f0s) == {0}
        # dev/test speakers keep the voice's own intonation.
        assert {s.f0 for s in speakers["dev"] + speakers["test"]} == {0}


def test_silence_margins_are_exact_silence_around_the_engine_output(tmp_path):
    from asr_recipes.synth.voices import Speaker

    speaker = Speaker("1", "rms", "", 100, 0, engine="flite")
    text = "dial five"
    plain = Utterance("x", "u", "plain.flac", text.upper(), text, speaker)
    padded = Utterance("x", "u", "padded.flac", text.upper(), text, speaker, pad=(0.125, 0.25))
    render(plain, tmp_path)
    render(padded, tmp_path)
    a, rate = soundfile.read(str(tmp_path / "plain.flac"), dtype="int16")
    b, _ = soundfile.read(str(tmp_path / "padded.flac"), dtype="int16")
    lead, trail = int(0.125 * rate), int(0.25 * rate)
    assert len(b) == len(a) + lead + trail
    assert not b[:lead].any() and not b[len(b) - trail:].any()
    assert np.array_equal(b[lead:lead + len(a)], a)  # the speech itself is untouched (no dither)


def test_every_utterance_gets_its_own_seeded_margins():
    plan = plan_librispeech("commands", "tiny", seed=0)
    (lead_lo, lead_hi), (trail_lo, trail_hi) = SILENCE_MARGINS
    clean = [u for u in plan if not u.mix_from]
    for u in clean:
        assert lead_lo <= u.pad[0] <= lead_hi and trail_lo <= u.pad[1] <= trail_hi, u
    assert len({u.pad for u in clean}) == len(clean)  # drawn per utterance
    # test-other mixes noise into the already padded test-clean file: nothing added twice
    assert all(u.pad == (0.0, 0.0) for u in plan if u.mix_from)
    assert plan == plan_librispeech("commands", "tiny", seed=0)
    assert [u.pad for u in plan] != [u.pad for u in plan_librispeech("commands", "tiny", seed=1)]
    assert all(u.pad == (0.0, 0.0) for u in plan_librispeech("commands", "tiny", seed=0, margins=False))


def test_noisy_part_is_the_clean_part_plus_noise_at_the_snr(tiny_librispeech):
    root = tiny_librispeech
    noisy = sorted((root / "test-other").rglob("*.flac"))
    assert len(noisy) == split_sizes("tiny")["test"]
    for path in noisy:
        spk, chapter, index = path.stem.split("-")
        clean_spk = int(spk) - 3000
        [clean_path] = (root / "test-clean" / str(clean_spk)).rglob(f"*-{index}.flac")
        clean, _ = soundfile.read(str(clean_path))
        mixed, _ = soundfile.read(str(path))
        assert len(mixed) == len(clean)
        # mixed = g * (clean + noise) (g < 1 only if the sum had to be scaled down to not clip):
        # project out the speech, measure what is left.
        g = mixed @ clean / (clean @ clean)
        rest = mixed - g * clean
        assert 0.5 < g < 1.05  # 1 + the chance correlation of noise and speech when nothing clipped
        assert 10 * np.log10((g * g * (clean @ clean)) / (rest @ rest)) == pytest.approx(10.0, abs=0.3)


@pytest.mark.parametrize("layout,task", [("librispeech", "commands"),
                                         ("librispeech", "sentences"), ("aishell", None)])
def test_durations_stay_between_1_5_and_5_seconds(tmp_path, layout, task):
    root = synthesize(layout, tmp_path, task=task, size=15, num_jobs=2)
    files = list(root.rglob("*.flac" if layout == "librispeech" else "*.wav"))
    assert len(files) == 15 * (6 if layout == "librispeech" else 3)
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
    with pytest.raises(SynthesisError, match="unknown flite voice 'bdl'"):
        synthesize("librispeech", tmp_path, flite_voices=["bdl"])
    with pytest.raises(SynthesisError, match="heldout_voice='slt' is also in flite_voices"):
        synthesize("librispeech", tmp_path, heldout_voice="slt")
    with pytest.raises(SynthesisError, match="only apply to layout=librispeech"):
        synthesize("aishell", tmp_path, noisy_snr=5)
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
    assert len(lines) == sum(split_sizes("tiny")[split] for split in ALL_PARTS.values())
    vocabulary = GRAMMARS["sentences"].vocabulary()
    assert all(set(line.split()[1:]) <= vocabulary for line in lines)


def test_missing_tools_give_install_advice_and_nonzero_exit(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    done = run_entry_point([f"out_dir={tmp_path / 'corpus'}", "size=tiny"], str(empty))
    assert done.returncode != 0
    assert "apt-get install espeak-ng flite sox" in done.stderr
    assert not (tmp_path / "corpus").exists()


def test_missing_flite_alone_is_named(tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("espeak-ng", "sox"):
        (tools / tool).symlink_to(shutil.which(tool))
    done = run_entry_point([f"out_dir={tmp_path / 'corpus'}", "size=tiny"], str(tools))
    assert done.returncode != 0
    assert "error: flite not found on PATH" in done.stderr and "apt-get install espeak-ng flite sox" in done.stderr
    # espeak-ng alone is enough for a corpus without flite voices.
    done = run_entry_point([f"out_dir={tmp_path / 'corpus'}", "size=tiny", "flite_voices=[]", "heldout_voice=null"],
                           str(tools))
    assert done.returncode == 0, done.stderr
    assert {p.name for p in (tmp_path / "corpus" / "LibriSpeech").iterdir() if p.is_dir()} == {
        "train-clean-100", "dev-clean", "test-clean", "test-other"}
