"""bin.average: the written checkpoint's weights are the explicit means of the models."""

import torch

from asr_recipes import checkpoint as ckpt_io
from asr_recipes.checkpoint import TRAINING_ONLY, model_from_checkpoint
from tests.decoding.entry import run_entry
from tests.decoding.trained_exp import trained_exp


def _assert_state_close(got, expected):
    """Floating entries only: integer counters (BatchNorm's num_batches_tracked) are not
    weights, and training's running average treats them as floats."""
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k].dtype == v.dtype, k
        if v.is_floating_point():
            torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6, msg=k)


def _mean(states):
    out = {}
    for k, last in states[-1].items():
        out[k] = (sum(s[k].double() for s in states) / len(states)).to(last.dtype) if last.is_floating_point() \
            else last
    return out


def test_average_of_running_averages_is_the_mean_of_every_model_in_between(tiny_corpus, tmp_path_factory, tmp_path):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    latest = (exp / "latest.txt").read_text()
    run_entry("asr_recipes.bin.average", f"exp_dir={exp}", "epoch=3", "avg=2")
    out = ckpt_io.load_checkpoint(exp / "averaged-epoch-3-avg-2.pt")
    epoch1, epoch3 = (ckpt_io.load_checkpoint(exp / f"epoch-{e}.pt") for e in (1, 3))
    first, last = epoch1["progress"]["step"], epoch3["progress"]["step"]
    assert last - first >= 4
    # the models after steps first+1 .. last, one checkpoint per step
    between = [ckpt_io.load_checkpoint(exp / f"checkpoint-{s}.pt")["model"] for s in range(first + 1, last + 1)]
    _assert_state_close(out["model"], _mean(between))
    assert out["averaging"]["method"] == "running_average"
    assert not set(TRAINING_ONLY) & out.keys()
    for key in ("model_config", "vocab_size", "feature_dim", "tokenizer", "feature_config", "progress"):
        assert out[key] == epoch3[key], key
    assert (exp / "latest.txt").read_text() == latest  # resuming training still finds its checkpoint
    model, tokenizer = model_from_checkpoint(out)
    assert tokenizer.vocab_size == out["vocab_size"] and not model.training


def test_plain_average_and_the_fallback_when_avg_covers_every_epoch(tiny_corpus, tmp_path_factory, tmp_path):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    models = {e: ckpt_io.load_checkpoint(exp / f"epoch-{e}.pt")["model"] for e in (1, 2, 3)}
    run_entry("asr_recipes.bin.average", f"exp_dir={exp}", "epoch=3", "avg=2", "use_averaged_model=false")
    plain = ckpt_io.load_checkpoint(exp / "averaged-epoch-3-avg-2.pt")
    _assert_state_close(plain["model"], _mean([models[2], models[3]]))
    assert plain["averaging"]["method"] == "plain"
    # epoch 2, avg 2: no epoch-0 checkpoint to subtract -> plain mean of epochs 1..2
    run_entry("asr_recipes.bin.average", f"exp_dir={exp}", "epoch=2", "avg=2", "use_averaged_model=true")
    fallback = ckpt_io.load_checkpoint(exp / "averaged-epoch-2-avg-2.pt")
    _assert_state_close(fallback["model"], _mean([models[1], models[2]]))
    assert [p.name for p in exp.glob(".*tmp*")] == []
