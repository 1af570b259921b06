"""CTC and CR-CTC in the training objective and loop: the total is the documented
combination of terms computed independently (the model's own losses, torch's CTC loss, the
consistency formula written out), and training logs every term and checkpoints the head."""

import logging

import pytest
import torch

from asr_recipes.constants import NUM_MEL_BINS
from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.models.build import build_transducer
from asr_recipes import checkpoint as ckpt_io
from asr_recipes.training.distributed import DistInfo
from asr_recipes.training.objective import LossConfig, TransducerObjective
from asr_recipes.training.trainer import OptimConfig, Trainer, TrainerConfig, seed_everything
from tests.conftest import tiny_data_config
from tests.numerics import float32_sum_tol

# layer norm and no dropout: each utterance's encoder output depends on itself alone, so the
# doubled CR-CTC batch can be compared with the views encoded one by one
MODEL = dict(d_model=16, num_heads=2, ff_dim=32, num_layers=2, kernel_size=5, dropout=0.0, subsampling_channels=4,
             conv_norm="layer", decoder_dim=16, context_size=2, joiner_dim=16, ctc_head=True)
V = 9


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([120, 97, 64])
    x = torch.randn(3, 120, NUM_MEL_BINS, generator=g)
    tokens = torch.randint(1, V, (3, 6), generator=g)
    token_lens = torch.tensor([6, 4, 2])
    return x, lens, tokens, token_lens


def reference_terms(model, x, lens, tokens, token_lens, cfg):
    """(simple, pruned, ctc) per utterance for one view, from the model's own forward and
    torch's CTC loss."""
    simple, pruned = model(x, lens, tokens, token_lens, cfg.lattice, reduction="none")
    enc, enc_lens = model.encode(x, lens)
    log_probs = model.ctc_head(enc)  # (N, T', V)
    ctc = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), tokens, enc_lens, token_lens, reduction="none")
    return simple, pruned, ctc, log_probs, enc_lens


def symmetric_kl(a, b, lens):
    """1/2 sum over valid frames of KL(p_b || p_a) + KL(p_a || p_b), in float64."""
    a, b = a.double(), b.double()
    per_frame = (b.exp() * (b - a) + a.exp() * (a - b)).sum(-1)  # (N, T')
    valid = torch.arange(a.size(1))[None, :] < lens[:, None]
    return 0.5 * (per_frame * valid).sum(-1)


def test_ctc_is_added_to_the_transducer_loss():
    torch.manual_seed(0)
    model = build_transducer(MODEL, V)
    cfg = LossConfig(warm_step=10, ctc_scale=0.3)
    x, lens, tokens, token_lens = batch()
    total, parts = TransducerObjective(model, cfg)(x, lens, tokens, token_lens, step=4)
    simple, pruned, ctc, _, _ = reference_terms(model, x, lens, tokens, token_lens, cfg)
    s, p = cfg.scales.at(4)
    assert set(parts) == {"simple", "pruned", "ctc"}
    for got, want in ((parts["simple"], simple), (parts["pruned"], pruned), (parts["ctc"], ctc),
                      (total, s * simple + p * pruned + 0.3 * ctc)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("step", [5, 40])  # during and after the cr_scale ramp (warm_step 10)
def test_cr_ctc_averages_both_views_and_adds_the_ramped_consistency_term(step):
    torch.manual_seed(1)
    model = build_transducer(MODEL, V)
    cfg = LossConfig(warm_step=10, ctc_scale=0.2, cr_scale=0.5)
    x, lens, tokens, token_lens = batch()
    second = x.clone()
    second[:, 30:50] = 0.0  # a time mask on view 2 only
    second[:, :, 10:20] = 0.0  # and a frequency mask
    objective = TransducerObjective(model, cfg).train()
    total, parts = objective(x, lens, tokens, token_lens, step=step, second_view=second)
    one = reference_terms(model, x, lens, tokens, token_lens, cfg)
    two = reference_terms(model, second, lens, tokens, token_lens, cfg)
    s, p = cfg.scales.at(step)
    ramp = min(step / 10, 1.0)
    cr = symmetric_kl(one[3], two[3], one[4])
    per_view = [s * v[0] + p * v[1] + 0.2 * v[2] for v in (one, two)]
    assert set(parts) == {"simple", "pruned", "ctc", "cr"}
    # the encoder ran on a batch of 2N here and of N there: float32 sums in other orders,
    # at most over T' x (U+1) x V lattice cells (29 x 7 x 9)
    def tol(values):
        return float32_sum_tol(float(values.detach().abs().max()), 29 * 7 * V)

    for k, name in enumerate(("simple", "pruned", "ctc")):
        want = (one[k] + two[k]) / 2
        torch.testing.assert_close(parts[name], want, rtol=0, atol=tol(want))
    torch.testing.assert_close(parts["cr"].double(), cr, rtol=0, atol=tol(cr))
    assert float(cr.detach().min()) > 0
    want = ((per_view[0] + per_view[1]) / 2).double() + 0.5 * ramp * cr
    torch.testing.assert_close(total.double(), want, rtol=0, atol=tol(want))


def test_cr_ctc_without_a_second_view_repeats_the_features_and_validation_sees_one_view():
    torch.manual_seed(2)
    model = build_transducer(MODEL, V)
    cfg = LossConfig(warm_step=10, ctc_scale=0.2, cr_scale=0.5)
    x, lens, tokens, token_lens = batch()
    objective = TransducerObjective(model, cfg).train()
    total, parts = objective(x, lens, tokens, token_lens, step=20)
    assert torch.equal(parts["cr"], torch.zeros(3))  # identical views (no dropout): nothing to pull
    with torch.no_grad():
        objective.eval()
        valid_total, valid_parts = objective(x, lens, tokens, token_lens, step=20)
    assert "cr" not in valid_parts
    torch.testing.assert_close(valid_total, total)


def test_ctc_settings_are_checked_against_each_other_and_the_model():
    with pytest.raises(ValueError, match="ctc_scale > 0 too"):
        LossConfig(cr_scale=0.02)
    with pytest.raises(ValueError, match="loss.type=pruned"):
        LossConfig(type="full", ctc_scale=0.1)
    with pytest.raises(ValueError, match="time_mask_ratio"):
        LossConfig(ctc_scale=0.1, time_mask_ratio=0)
    with pytest.raises(ValueError, match="model.ctc_head=true"):
        TransducerObjective(build_transducer({**MODEL, "ctc_head": False}, V), LossConfig(ctc_scale=0.1))
    with pytest.raises(ValueError, match="untrained"):
        TransducerObjective(build_transducer(MODEL, V), LossConfig())


def test_training_with_cr_ctc_logs_every_term_and_checkpoints_the_head(tiny_corpus, tmp_path, caplog):
    tokenizer = load_tokenizer(tiny_corpus.lang)
    seed_everything(0)
    model_cfg = {**MODEL, "d_model": 32, "joiner_dim": 32, "decoder_dim": 32}
    model = build_transducer(model_cfg, tokenizer.vocab_size)
    cfg = TrainerConfig(exp_dir=str(tmp_path), seed=0, num_epochs=1, max_steps=3, save_every_n=0, log_every_n=1,
                        progress_bar=False, tensorboard=False, validate=False,
                        loss=LossConfig(warm_step=2, ctc_scale=0.1, cr_scale=0.02), optim=OptimConfig(lr=0.003))
    data = DataModule(tiny_data_config(tiny_corpus), tokenizer)  # conf/data/default.yaml: SpecAugment on
    cpu = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    with caplog.at_level(logging.INFO, logger="asr_recipes.training.monitor"):
        Trainer(cfg, model, model_cfg, tokenizer, data, cpu).fit()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(lines) == 3
    for line in lines:
        terms = dict(t.rsplit(" ", 1) for t in line.split(": ", 1)[1].split(", ")[:5])
        assert set(terms) == {"loss", "simple", "pruned", "ctc", "cr"}, line
        # the views differ (independent masks; the model has no dropout): the term is not 0
        assert float(terms["cr"]) > 0, line
    ckpt = ckpt_io.load_latest(tmp_path)  # written when max_steps stopped training
    rebuilt = build_transducer(ckpt["model_config"], ckpt["vocab_size"], ckpt["feature_dim"])
    rebuilt.load_state_dict(ckpt["model"])
    torch.testing.assert_close(rebuilt.ctc_head.linear.weight, model.ctc_head.linear.weight)
