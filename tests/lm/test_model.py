"""The token LSTM LM against hand computations: a unigram-like LM whose perplexity is known in
closed form, and the LSTM equations written out in float64; its checkpoints and training."""

import math

import numpy as np
import pytest
import torch

from asr_recipes.training.lm_text import TokenCorpus
from asr_recipes.checkpoint.lm import LmCheckpointError, lm_from_checkpoint, load_lm_checkpoint, save_lm_checkpoint
from asr_recipes.lm.model import EOS_ID, SOS_ID, LmConfig, RnnLm
from asr_recipes.training.lm_trainer import LmTrainConfig, LmTrainer, perplexity


def unigram_lm(probs):
    """An LSTM whose weights are all zero, so h = 0.5 * tanh(0) = 0 after every input: the
    output is softmax(bias) whatever the history, a unigram with the given probabilities."""
    lm = RnnLm(len(probs), LmConfig(embedding_dim=4, hidden_dim=3, num_layers=2, tie_weights=False))
    with torch.no_grad():
        for name, p in lm.named_parameters():
            p.zero_()
        lm.output.bias.copy_(torch.log(torch.tensor(probs)))
    return lm.eval()


def test_perplexity_of_a_unigram_lm_is_the_hand_computed_value():
    # ids: 0 = end of sentence, 1 = <unk>, 2, 3
    lm = unigram_lm([0.5, 0.125, 0.125, 0.25])
    corpus = TokenCorpus.from_sequences([[3], [2, 3]])
    # predictions: 3, eos | 2, 3, eos -> 0.25 * 0.5 * 0.125 * 0.25 * 0.5 = 2^-9 over 5 predictions
    ppl, nll, count = perplexity(lm, corpus)
    assert count == 5
    assert nll == pytest.approx(9 * math.log(2), rel=1e-6)
    assert ppl == pytest.approx(2 ** (9 / 5), rel=1e-6)


@torch.no_grad()
def lstm_reference(lm: RnnLm, tokens):
    """log P(tokens, eos) from the LSTM equations in float64 (PyTorch's gate order i, f, g, o)."""
    E = lm.embedding.weight.double()
    layers = [(getattr(lm.rnn, f"weight_ih_l{k}").double(), getattr(lm.rnn, f"weight_hh_l{k}").double(),
               (getattr(lm.rnn, f"bias_ih_l{k}") + getattr(lm.rnn, f"bias_hh_l{k}")).double())
              for k in range(lm.num_layers)]
    W, b = lm.output.weight.double(), lm.output.bias.double()
    H = lm.hidden_dim
    h = [torch.zeros(H, dtype=torch.float64) for _ in layers]
    c = [torch.zeros(H, dtype=torch.float64) for _ in layers]
    total = 0.0
    for x, target in zip([SOS_ID, *tokens], [*tokens, EOS_ID]):
        inp = E[x]
        for k, (w_ih, w_hh, bias) in enumerate(layers):
            z = w_ih @ inp + w_hh @ h[k] + bias
            i, f, o = torch.sigmoid(z[:H]), torch.sigmoid(z[H:2 * H]), torch.sigmoid(z[3 * H:])
            g = torch.tanh(z[2 * H:3 * H])
            c[k] = f * c[k] + i * g
            h[k] = o * torch.tanh(c[k])
            inp = h[k]
        total += float((W @ inp + b).log_softmax(0)[target])
    return total


@torch.no_grad()
def test_sentence_log_prob_and_token_steps_follow_the_lstm_equations():
    torch.manual_seed(0)
    lm = RnnLm(7, LmConfig(embedding_dim=6, hidden_dim=6, num_layers=2, tie_weights=True)).eval()
    for p in lm.parameters():
        p.mul_(3.0)  # far from uniform
    sentences = [[2, 5, 6, 3], [4], []]
    lens = torch.tensor([len(s) for s in sentences])
    tokens = torch.full((3, 4), 6)  # padding of any value is ignored
    for n, s in enumerate(sentences):
        tokens[n, :len(s)] = torch.tensor(s, dtype=torch.int64)
    got = lm.sentence_log_prob(tokens, lens)
    want = [lstm_reference(lm, s) for s in sentences]
    # float32 over a few dozen terms of O(1)
    assert got.tolist() == pytest.approx(want, abs=1e-5)
    assert len(set(round(w, 3) for w in want)) == 3
    # one token at a time from the sos state: the same sum
    log_probs, state = lm.start(1)
    total = 0.0
    for k in [*sentences[0], EOS_ID]:
        total += float(log_probs[0, k])
        log_probs, state = lm.step(torch.tensor([k]), state)
    assert total == pytest.approx(want[0], abs=1e-5)


def test_checkpoints_load_with_weights_only_and_keep_tied_weights(tmp_path):
    torch.manual_seed(1)
    lm = RnnLm(9, LmConfig(embedding_dim=8, hidden_dim=8, num_layers=1, tie_weights=True)).eval()
    path = save_lm_checkpoint(tmp_path / "lm.pt", {"lm_config": lm.config.to_dict(), "vocab_size": 9,
                                                   "tokenizer": {"kind": "none"}, "model": lm.state_dict()})
    loaded = lm_from_checkpoint(load_lm_checkpoint(path))
    assert loaded.output.weight is loaded.embedding.weight
    x = torch.tensor([[2, 3, 4]])
    assert torch.equal(loaded.sentence_log_prob(x, torch.tensor([3])), lm.sentence_log_prob(x, torch.tensor([3])))
    torch.save({"format": "asr-recipes/1"}, tmp_path / "transducer.pt")
    with pytest.raises(LmCheckpointError, match="not an LM checkpoint"):
        load_lm_checkpoint(tmp_path / "transducer.pt")
    (tmp_path / "broken.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(LmCheckpointError, match="broken.pt cannot be read"):
        load_lm_checkpoint(tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="tie_weights needs embedding_dim == hidden_dim"):
        LmConfig(embedding_dim=8, hidden_dim=16)


class _Symbols:
    """What the trainer needs of a tokenizer: to_dict()."""

    def to_dict(self):
        return {"kind": "test"}


def test_training_lowers_dev_perplexity_and_resumes(tmp_path):
    # a corpus with structure an LSTM learns in a few steps: 2 3 4 5 2 3 4 5 ... of varying length
    rng = np.random.default_rng(0)
    sentences = [[2 + (i % 4) for i in range(int(n))] for n in rng.integers(3, 12, size=200)]
    train, dev = TokenCorpus.from_sequences(sentences[:180]), TokenCorpus.from_sequences(sentences[180:])
    torch.manual_seed(0)
    lm = RnnLm(6, LmConfig(embedding_dim=16, hidden_dim=16, num_layers=1, tie_weights=True))
    before, _, _ = perplexity(lm, dev)
    cfg = LmTrainConfig(lm_dir=str(tmp_path), num_epochs=2, max_tokens=400, lr=0.02, log_every_n=1000)
    after = LmTrainer(cfg, lm, _Symbols(), train, dev, torch.device("cpu")).fit()
    assert after < 0.5 * before
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["epoch-1.pt", "epoch-2.pt"]
    ckpt = load_lm_checkpoint(tmp_path / "epoch-2.pt")
    assert ckpt["valid"]["perplexity"] == pytest.approx(after)
    # a third epoch continues from epoch 2's weights and optimizer
    lm3 = RnnLm(6, LmConfig(embedding_dim=16, hidden_dim=16, num_layers=1, tie_weights=True))
    trainer = LmTrainer(LmTrainConfig(**{**cfg.__dict__, "num_epochs": 3}), lm3, _Symbols(), train, dev,
                        torch.device("cpu"))
    third = trainer.fit()
    assert trainer.epoch == 3 and load_lm_checkpoint(tmp_path / "epoch-3.pt")["progress"]["epoch"] == 3
    assert third < before


def test_a_max_steps_stop_writes_a_step_checkpoint_and_resuming_trains_the_same_batches(tmp_path):
    """Stopped inside epoch 1 by max_steps, then continued: no epoch-1.pt for the unfinished
    epoch (a checkpoint-<step>.pt instead, named by latest.txt), and the two epochs end with the
    weights of a run that never stopped (same batches, same dropout draws, same Adam state)."""
    rng = np.random.default_rng(1)
    sentences = [[2 + (i % 4) for i in range(int(n))] for n in rng.integers(3, 12, size=120)]
    train, dev = TokenCorpus.from_sequences(sentences[:100]), TokenCorpus.from_sequences(sentences[100:])
    config = LmConfig(embedding_dim=8, hidden_dim=8, num_layers=2, tie_weights=True, dropout=0.3)

    def fit(lm_dir, **overrides):
        torch.manual_seed(0)
        cfg = LmTrainConfig(lm_dir=str(lm_dir), num_epochs=2, max_tokens=200, lr=0.01, log_every_n=1000,
                            **overrides)
        trainer = LmTrainer(cfg, RnnLm(6, config), _Symbols(), train, dev, torch.device("cpu"))
        trainer.fit()
        return trainer

    whole = fit(tmp_path / "whole")
    steps_per_epoch = whole.step // 2
    assert steps_per_epoch > 3
    stopped = fit(tmp_path / "stopped", max_steps=3)
    assert sorted(p.name for p in (tmp_path / "stopped").glob("*.pt")) == ["checkpoint-3.pt"]
    assert (tmp_path / "stopped" / "latest.txt").read_text().strip() == "checkpoint-3.pt"
    progress = load_lm_checkpoint(tmp_path / "stopped" / "checkpoint-3.pt")["progress"]
    assert (progress["epoch"], progress["step"], progress["batches_in_epoch"]) == (0, 3, 3)
    assert stopped.epoch == 0
    resumed = fit(tmp_path / "stopped")  # the same command without the limit continues
    assert resumed.step == whole.step and resumed.epoch == 2
    assert sorted(p.name for p in (tmp_path / "stopped").glob("*.pt")) == ["epoch-1.pt", "epoch-2.pt"]
    for name, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, msg=name)
