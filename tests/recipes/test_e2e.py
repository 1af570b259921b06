"""The recipes end to end on tiny synthesized corpora in the real layouts (no downloads): every
stage from data preparation to the run's RESULTS.md and the ONNX export, with the tiny model
(`--model tiny`) and a few training steps, then the language model (a tiny LSTM, one epoch) and
decoding with it.

Outputs are checked with independent readers: lhotse for cut manifests and features, torch for
checkpoints, TensorBoard's EventAccumulator for the logs, kaldialign for the error rates."""

import ast
import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import kaldialign
import pytest
import torch
from lhotse import load_manifest

from asr_recipes.models.build import build_transducer
from asr_recipes.synth.corpus import synthesize_aishell_layout, synthesize_librispeech_layout
from asr_recipes.synth.text import GRAMMARS, sample_sentences

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
METHODS = ("greedy_search", "modified_beam_search")
#: A couple of steps per epoch of the tiny model; no worker processes; CPU even under torchrun.
TRAIN_ARGS = ("trainer.num_epochs=2 trainer.save_every_n=3 data.num_workers=0 data.max_duration=10 "
              "trainer.progress_bar=false trainer.log_every_n=1 device=cpu")
DECODE_ARGS = "data.num_workers=0 device=cpu"
#: A tiny LM, one epoch, on the CPU; LODR on, so stage 10 uses the bigram too.
LM_ARGS = ["--lm-args", "lm_model.embedding_dim=16 lm_model.hidden_dim=16 lm_model.num_layers=1 lm_model.dropout=0.0 "
           "trainer.num_epochs=1 device=cpu", "--lm-scale", "0.3", "--lodr-scale", "0.1"]


def run_recipe(recipe, cwd, *args, timeout=600):
    # PYTHONPATH: the stages run this checkout's asr_recipes, not the one the interpreter has installed
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = ["bash", str(REPO / "egs" / recipe / "run.sh"), "--python", sys.executable, "--nj", "1",
           "--model", "tiny", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def read_recogs(path):
    """{utt_id: (ref tokens, hyp tokens)} from an icefall-style recogs file."""
    out = {}
    for line in path.read_text().splitlines():
        utt_id, field = line.split(":\t")
        kind, tokens = field.split("=", 1)
        out.setdefault(utt_id, {})[kind] = ast.literal_eval(tokens)
    return {k: (v["ref"], v["hyp"]) for k, v in out.items()}


def composed_model(experiment, causal=False):
    """The model section train composes for the experiment with `model=tiny` (what --model tiny
    passes): tiny.yaml under the experiment's own model settings."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", "model=tiny",
                                                      f"model.causal={str(causal).lower()}"])
    return OmegaConf.to_container(cfg.model, resolve=True)


def check_training(exp, epochs, experiment, causal=False):
    """Epoch checkpoints that rebuild a model (the one --model tiny composes), a trained step
    count, TensorBoard scalars."""
    expected = composed_model(experiment, causal)
    for epoch in range(1, epochs + 1):
        ckpt = torch.load(exp / f"epoch-{epoch}.pt", map_location="cpu", weights_only=True)
        model = build_transducer(ckpt["model_config"], ckpt["vocab_size"], ckpt["feature_dim"])
        model.load_state_dict(ckpt["model"])
        assert all(torch.isfinite(p).all() for p in ckpt["model"].values() if p.is_floating_point())
        assert {k: ckpt["model_config"][k] for k in expected} == expected
    assert ckpt["progress"]["epoch"] == epochs and ckpt["progress"]["step"] >= 2 * epochs
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(exp / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert tags and max(len(events.Scalars(t)) for t in tags) >= ckpt["progress"]["step"] // 2


def results_files(exp, method, pattern, lm=False):
    """exp/method's files matching pattern, those decoded with the LM (stage 10) or without (stage 6)."""
    return sorted(p for p in (exp / method).glob(pattern) if ("-lm-" in p.name) == lm)


def check_decoding(exp, fbank, corpus, parts, avg_name, unit, methods=METHODS, lm=False):
    """Scoring files per method and part, covering every test cut, with the error rate that
    kaldialign gives on their own ref/hyp tokens; refs are the cut transcripts."""
    assert (exp / avg_name).is_file()
    torch.load(exp / avg_name, map_location="cpu", weights_only=True)["model"]
    for method in methods:
        for part in parts:
            [recogs] = results_files(exp, method, f"recogs-{part}-*.txt", lm)
            key = recogs.name[len(f"recogs-{part}-"):-len(".txt")]
            assert (exp / method / f"errs-{part}-{key}.txt").is_file()
            cuts = load_manifest(fbank / f"{corpus}_cuts_{part}.jsonl.gz")
            texts = {c.id: c.supervisions[0].text for c in cuts}
            results = read_recogs(recogs)
            assert set(results) == set(texts)
            errors = ref_len = 0
            for utt_id, (ref, hyp) in results.items():
                expected = texts[utt_id].split() if unit == "word" else list(texts[utt_id].replace(" ", ""))
                assert ref == expected, utt_id
                errors += kaldialign.edit_distance(ref, hyp)["total"]
                ref_len += len(ref)
            summary = (exp / method / f"wer-summary-{part}-{key}.txt").read_text().splitlines()
            assert summary[1] == f"{key}\t{100 * errors / ref_len:.2f}"


def check_streaming(recipe, tmp_path, common_args, parts, epochs=2):
    """Stages 4.. again with --streaming true into a fresh exp dir, on the prepared data: a
    causal model, decoded chunk by chunk with two chunk sizes, every cut of every part, also
    with the first run's LM (--lm-dir: its stage 9 finds the LM trained)."""
    exp = tmp_path / "exp-streaming"
    run_recipe(recipe, tmp_path, *common_args, "--stage", "4", "--exp-dir", str(exp), "--streaming", "true",
               "--decode-chunks", "2 4", "--results-md", str(tmp_path / "RESULTS-streaming.md"),
               "--lm-dir", str(tmp_path / "exp" / "lm"))
    ckpt = torch.load(exp / f"epoch-{epochs}.pt", map_location="cpu", weights_only=True)
    assert ckpt["model_config"]["causal"] is True and ckpt["decoding"]["left_context"] == 64
    for method, lm in [(m, False) for m in METHODS] + [("modified_beam_search", True)]:
        for part in parts:
            for chunk in (2, 4):
                [recogs] = results_files(exp, method, f"recogs-{part}-*-chunk-{chunk}-left-64-streaming.txt", lm)
                assert len(read_recogs(recogs)) == 3
    assert not (exp / "lm").exists()
    assert "chunk-4-left-64-streaming" in (tmp_path / "RESULTS-streaming.md").read_text()
    check_export(exp, streaming=True)  # sherpa-onnx's streaming layout, with the recorded chunk settings


def check_export(exp, streaming=False):
    """The export stage left a complete sherpa-onnx directory (its checks passed)."""
    names = {p.name for p in (exp / "onnx").iterdir()}
    assert names == {"encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt", "export.json",
                     "encoder.int8.onnx", "decoder.int8.onnx", "joiner.int8.onnx"}, names
    info = json.loads((exp / "onnx" / "export.json").read_text())
    assert info["streaming"] is streaming and info["int8"] is True


def check_results_md(path, title_words, parts, metric, lm=True):
    """One section, titled; a row per part and method (and, after stage 10, per part with the LM)."""
    text = path.read_text()
    assert len(re.findall(r"^## ", text, re.MULTILINE)) == 1
    heading = text.splitlines()[0]
    assert all(w in heading for w in title_words), heading
    for method, key in [(m, "") for m in METHODS] + ([("modified_beam_search", "-lm-")] if lm else []):
        for part in parts:
            assert re.search(rf"^\| {re.escape(part)} \| {method} \| [^|]*{key}[^|]*\| {metric} \|", text,
                             re.MULTILINE), (part, method, text)


def check_lm(lm_dir, exp, fbank, corpus, parts, avg_name, unit):
    """Stage 9's LM, bigram and sherpa-onnx files; stage 10's scored decoding with them (LODR on)."""
    assert (lm_dir / "latest.txt").read_text().strip() == "epoch-1.pt"
    ckpt = torch.load(lm_dir / "epoch-1.pt", map_location="cpu", weights_only=True)
    assert ckpt["format"] == "asr-recipes-lm/1" and ckpt["lm_config"]["hidden_dim"] == 16
    assert ckpt["valid"]["perplexity"] > 1.0  # dev text given
    bigram = json.loads((lm_dir / "lodr-bigram.json").read_text())
    assert bigram["vocab_size"] == ckpt["vocab_size"] and bigram["pairs"]
    assert sorted(p.name for p in (lm_dir / "onnx").iterdir()) == [
        "lm-export.json", "lm-no-state.onnx", "lm-with-state.onnx", "lodr-2gram.fst"]
    check_decoding(exp, fbank, corpus, parts, avg_name, unit, methods=["modified_beam_search"], lm=True)
    for part in parts:
        [summary] = results_files(exp, "modified_beam_search", f"wer-summary-{part}-*.txt", lm=True)
        assert "-scale-0.3-lodr-" in summary.name and summary.name.endswith("-scale-0.1.txt")


MINI_TEST_PARTS = ["dev-clean", "dev-unseen", "test-clean", "test-unseen", "test-other"]


def test_mini_recipe_all_stages_from_another_directory(tmp_path):
    real_results = REPO / "egs" / "mini" / "RESULTS.md"
    before = real_results.read_bytes() if real_results.exists() else None
    # epoch=last (the default): the newest epoch, 2 here, averaged with avg capped at 1.
    # No --results-md: the run's table goes to exp/RESULTS.md, never to egs/mini/RESULTS.md.
    args = ["--size", "tiny", "--dl-dir", "dl", "--data-dir", "data", "--exp-dir", "exp",
            "--train-args", TRAIN_ARGS, "--decode-args", DECODE_ARGS, "--lm-sentences", "400", *LM_ARGS]
    run_recipe("mini", tmp_path, *args)  # relative paths: resolved against the caller's directory

    corpus = tmp_path / "dl" / "LibriSpeech"
    assert {p.name for p in corpus.iterdir() if p.is_dir()} == {"train-clean-100", *MINI_TEST_PARTS}
    fbank = tmp_path / "data" / "fbank"
    train = load_manifest(fbank / "librispeech_cuts_train-clean-100.jsonl.gz")
    # Speed perturbation (x3) and reverberation (a share of the cuts) of the training part.
    assert len(train) == 3 * 8
    assert sum(c.id.endswith("_sp0.9") or "_sp0.9_" in c.id for c in train) == 8
    assert 0 < sum(c.id.endswith("_rvb") for c in train) < len(train)
    assert train[0].load_features().shape == (train[0].num_frames, 80)
    assert len(load_manifest(fbank / "musan_cuts_noise.jsonl.gz")) == 20  # the generated noise
    tokens = [line.split()[0] for line in (tmp_path / "data" / "lang_char" / "tokens.txt").read_text().splitlines()]
    assert "▁" in tokens and "A" in tokens  # English letters plus the word-boundary token
    exp = tmp_path / "exp"
    check_training(exp, epochs=2, experiment="mini")
    config = (exp / "train-config.yaml").read_text()
    assert "- noise" in config and "- speech" in config  # noise mixed into training batches
    assert "rnnt_type: modified" in config  # trained for one symbol per frame
    check_decoding(exp, fbank, "librispeech", MINI_TEST_PARTS, "averaged-epoch-2-avg-1.pt", "word")
    for method in METHODS:  # one symbol per frame, as deployed
        assert all("max-sym-per-frame-1" in p.name for p in (exp / method).glob("wer-summary-*"))
    check_results_md(exp / "RESULTS.md", ["mini", "commands", "tiny"], MINI_TEST_PARTS, "WER")
    assert str(tmp_path) not in (exp / "RESULTS.md").read_text()  # no path of this machine
    check_export(exp)
    # The LM text: the generator's training sentences, none spoken in a dev or test part.
    lm_text = (tmp_path / "dl" / "lm" / "commands-train-sentences.txt").read_text().splitlines()
    spoken = {s.text for part in MINI_TEST_PARTS
              for s in load_manifest(tmp_path / "data" / "manifests" / f"librispeech_supervisions_{part}.jsonl.gz")}
    assert len(lm_text) == 400 and not set(lm_text) & spoken
    check_lm(exp / "lm", exp, fbank, "librispeech", MINI_TEST_PARTS, "averaged-epoch-2-avg-1.pt", "word")
    assert (real_results.read_bytes() if real_results.exists() else None) == before

    # A second run finds every stage done and changes nothing.
    results = (exp / "RESULTS.md").read_text()
    again = run_recipe("mini", tmp_path, *args)
    assert [int(n) for n in re.findall(r"Stage (\d+) already done", again.stderr)] == list(range(11))
    assert (exp / "RESULTS.md").read_text() == results

    check_zipformer_streaming(tmp_path, args)


def check_zipformer_streaming(tmp_path, args):
    """Stages 4-7 again with --model zipformer_mini --streaming true on the prepared data: the
    recipe switches to conf/experiment/mini_zipformer_mini.yaml (ScaledAdam), trains a causal
    Zipformer with its chunk lists and decodes it chunk by chunk."""
    exp = tmp_path / "exp-zipformer"
    run_recipe("mini", tmp_path, *args, "--model", "zipformer_mini", "--streaming", "true", "--stage", "4",
               "--stop-stage", "7", "--exp-dir", str(exp), "--decode-chunks", "4 8",
               "--results-md", str(tmp_path / "RESULTS-zipformer.md"))
    ckpt = torch.load(exp / "epoch-2.pt", map_location="cpu", weights_only=True)
    assert ckpt["model_config"]["encoder"] == "zipformer" and ckpt["model_config"]["causal"] is True
    trained = ckpt["train_config"]  # what mini_zipformer_mini.yaml selects, not mini.yaml's AdamW
    assert trained["optim"]["name"] == "scaled_adam" and trained["trainer"]["chunk_training"]["chunk_sizes"] == [
        4, 8, 16, -1]
    for method in METHODS:
        for chunk in (4, 8):
            for part in MINI_TEST_PARTS:
                [recogs] = (exp / method).glob(f"recogs-{part}-*-chunk-{chunk}-left-64-streaming.txt")
                assert len(read_recogs(recogs)) == 3
    assert "chunk-8-left-64-streaming" in (tmp_path / "RESULTS-zipformer.md").read_text()


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """Tiny corpora in the real layouts: LibriSpeech (dev-other/test-other are copies of the clean
    parts, which a synthesized corpus lacks) and AISHELL-1 under <dl>/aishell."""
    dl = tmp_path_factory.mktemp("download")
    libri = synthesize_librispeech_layout(dl, task="commands", size="tiny", seed=1, num_jobs=2, heldout_voice=None,
                                          noisy_snr=None, noise_corpus=False)
    shutil.copytree(libri / "dev-clean", libri / "dev-other")
    shutil.copytree(libri / "test-clean", libri / "test-other")
    synthesize_aishell_layout(dl / "aishell", size="tiny", seed=1, num_jobs=2)
    return dl


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_librispeech_recipe_stages_1_to_10_with_torchrun(synthesized, tmp_path):
    # The multi-node launch options (c10d rendezvous), here for one node with one CPU process.
    rendezvous = f"--nnodes 1 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:{free_port()} --rdzv-id e2e"
    # --lm-text: a copy of the LM text on disk (stage 0, which would download it, does not run here)
    lm_text = tmp_path / "lm-norm.txt.gz"
    with gzip.open(lm_text, "wt") as f:
        f.write("".join(s + "\n" for s in sample_sentences(GRAMMARS["commands"], "train", 300, 1)))
    common = ["--torchrun-args", rendezvous, "--dl-dir", str(synthesized), "--data-dir", str(tmp_path / "data"),
              "--full-libri", "false", "--vocab-size", "30", "--ngpu", "1", "--epoch", "2", "--avg", "1",
              "--train-args", TRAIN_ARGS, "--decode-args", DECODE_ARGS, "--lm-text", str(lm_text), *LM_ARGS]
    run_recipe("librispeech", tmp_path, "--stage", "1", "--exp-dir", str(tmp_path / "exp"),
               "--results-md", str(tmp_path / "RESULTS.md"), *common)
    fbank = tmp_path / "data" / "fbank"
    for part in ["dev-clean", "dev-other", "test-clean", "test-other"]:
        assert len(load_manifest(fbank / f"librispeech_cuts_{part}.jsonl.gz")) == 3
    # Speed perturbation: every training utterance also at 0.9x and 1.1x speed.
    recordings = load_manifest(tmp_path / "data" / "manifests" / "librispeech_recordings_train-clean-100.jsonl.gz")
    train = load_manifest(fbank / "librispeech_cuts_train-clean-100.jsonl.gz")
    durations = sorted(round(c.duration, 2) for c in train)
    expected = sorted(round(r.duration / f, 2) for r in recordings for f in (1.0, 0.9, 1.1))
    assert durations == pytest.approx(expected, abs=0.02)
    lang = tmp_path / "data" / "lang_bpe_30"
    assert len((lang / "tokens.txt").read_text().splitlines()) == 30
    exp = tmp_path / "exp"
    check_training(exp, epochs=2, experiment="librispeech")
    assert (exp / "train-config.yaml").read_text().count("train-clean-360") == 0  # --full-libri false
    check_decoding(exp, fbank, "librispeech", ["test-clean", "test-other"], "averaged-epoch-2-avg-1.pt", "word")
    check_results_md(tmp_path / "RESULTS.md", ["LibriSpeech", "100 h"], ["test-clean", "test-other"], "WER")
    check_export(exp)
    check_lm(exp / "lm", exp, fbank, "librispeech", ["test-clean", "test-other"], "averaged-epoch-2-avg-1.pt", "word")
    record = torch.load(exp / "lm" / "epoch-1.pt", map_location="cpu", weights_only=True)["train_config"]
    assert record["text"]["files"] == [str(lm_text)] and record["lm_model"]["hidden_dim"] == 16  # --lm-text, --lm-args
    check_streaming("librispeech", tmp_path, common, ["test-clean", "test-other"])


def test_aishell_recipe_stages_1_to_10_reports_cer(synthesized, tmp_path):
    common = ["--dl-dir", str(synthesized), "--data-dir", str(tmp_path / "data"), "--ngpu", "1", "--epoch", "2",
              "--avg", "1", "--train-args", TRAIN_ARGS, "--decode-args", DECODE_ARGS, *LM_ARGS]
    run_recipe("aishell", tmp_path, "--stage", "1", "--exp-dir", str(tmp_path / "exp"), *common)
    fbank = tmp_path / "data" / "fbank"
    assert len(load_manifest(fbank / "aishell_cuts_train.jsonl.gz")) == 3 * 8  # speed perturbation
    tokens = [line.split()[0] for line in (tmp_path / "data" / "lang_char" / "tokens.txt").read_text().splitlines()]
    assert "▁" not in tokens and sum(len(t) == 1 and "\u4e00" <= t <= "\u9fff" for t in tokens) >= 10
    exp = tmp_path / "exp"
    check_training(exp, epochs=2, experiment="aishell")
    ckpt = torch.load(exp / "epoch-2.pt", map_location="cpu", weights_only=True)
    assert ckpt["model_config"]["context_size"] == 1
    check_decoding(exp, fbank, "aishell", ["dev", "test"], "averaged-epoch-2-avg-1.pt", "char")
    for method in METHODS:
        [errs] = results_files(exp, method, "errs-test-*.txt")
        assert "%CER = " in errs.read_text()
    check_results_md(exp / "RESULTS.md", ["AISHELL-1", "CER"], ["dev", "test"], "CER")
    check_export(exp)
    check_lm(exp / "lm", exp, fbank, "aishell", ["dev", "test"], "averaged-epoch-2-avg-1.pt", "char")
    check_streaming("aishell", tmp_path, common, ["dev", "test"])
