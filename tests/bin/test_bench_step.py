"""bin.bench_step on the tiny corpus: one row per phase, times that add up, the batches training
would get (its batch size), and losses that are the training objective's."""

import re

import pytest
import torch

from asr_recipes.bin.bench_step import PHASES, step_losses
from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.models.build import build_transducer
from asr_recipes.training.objective import LossConfig, TransducerObjective
from tests.conftest import tiny_data_config
from tests.decoding.entry import run_entry
from tests.decoding.trained_exp import MODEL


def test_table_rows_add_up(tiny_corpus, capsys):
    run_entry("asr_recipes.bin.bench_step", "model=tiny", f"tokenizer_dir={tiny_corpus.lang}",
              f"data.manifest_dir={tiny_corpus.fbank}", "data.corpus=librispeech", "data.num_workers=0",
              "data.max_duration=12", "data.musan.parts=[]", "warmup=1", "batches=3", "threads=1")
    out = capsys.readouterr().out
    ms = {name: float(v) for name, v in re.findall(r"^\| ([^|]+?) \| ([\d.]+) \| [\d.]+% \|$", out, re.MULTILINE)}
    assert set(PHASES) <= set(ms), out
    assert all(ms[p] >= 0 for p in PHASES) and ms["encoder forward"] > 0 and ms["backward"] > 0
    assert ms["step (sum of the medians)"] == pytest.approx(sum(ms[p] for p in PHASES), abs=0.2)
    seconds = float(re.search(r"3 timed steps, median ([\d.]+) s of audio per batch", out)[1])
    assert 0 < seconds <= 12.0  # data.max_duration: the batches the training config makes


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_timed_losses_are_the_training_objectives(tiny_corpus, rnnt_type):
    tokenizer = load_tokenizer(tiny_corpus.lang)
    torch.manual_seed(0)
    model = build_transducer({**MODEL, "causal": False}, vocab_size=tokenizer.vocab_size).eval()  # no dropout draws
    batch = next(iter(DataModule(tiny_data_config(tiny_corpus), tokenizer).test_dataloaders()["test-clean"]))
    loss = LossConfig(warm_step=10, rnnt_type=rnnt_type)
    simple, pruned = step_losses(model, batch, loss)
    total, parts = TransducerObjective(model, loss)(batch["features"], batch["feature_lens"], batch["tokens"],
                                                    batch["token_lens"], step=100)
    assert simple.item() == pytest.approx(parts["simple"].sum().item(), rel=1e-5)
    assert pruned.item() == pytest.approx(parts["pruned"].sum().item(), rel=1e-5)
