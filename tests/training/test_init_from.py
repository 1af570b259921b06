"""Fine-tuning: ``train init_from=CKPT`` loads the checkpoint's weights exactly and starts the
optimizer and schedule afresh; ``freeze`` keeps weights bit-identical through training steps; a
run with another vocabulary re-initialises exactly the vocabulary layers; data.mux draws from
both corpora at the requested ratio."""

import logging
from pathlib import Path

import pytest
import torch
from lhotse import CutSet
from lhotse.cut import MonoCut

from asr_recipes.checkpoint import load_checkpoint
from asr_recipes.checkpoint.icefall_import import import_icefall
from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.mux import mux_with
from asr_recipes.data.tokenizer import CharTokenizer, load_tokenizer
from asr_recipes.models.build import ModelConfig, build_transducer
from asr_recipes.training.init_from import VOCABULARY_LAYERS, freeze, model_from_init_checkpoint
from tests.conftest import tiny_data_config
from tests.decoding.entry import run_entry
from tests.decoding.trained_exp import trained_exp

FIXTURES = Path(__file__).parents[1] / "fixtures" / "icefall"
LR = 0.003


def train_args(corpus, exp, *extra):
    return (f"exp_dir={exp}", f"tokenizer_dir={corpus.lang}", f"data.manifest_dir={corpus.fbank}",
            "data.valid_parts=[dev-clean]", "data.num_workers=0", "data.max_duration=12", "device=cpu",
            "trainer.validate=false", "trainer.tensorboard=false", "trainer.progress_bar=false",
            "trainer.prune_coverage_batches=0", f"optim.lr={LR}", "optim.weight_decay=0", *extra)


def test_init_from_loads_the_weights_and_starts_a_fresh_optimizer(tiny_corpus, tmp_path_factory, tmp_path):
    source_exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "source")
    source = load_checkpoint(source_exp / "epoch-3.pt")
    model, config, reinitialised = model_from_init_checkpoint(source, load_tokenizer(tiny_corpus.lang), "epoch-3.pt")
    assert reinitialised == [] and config == ModelConfig.from_mapping(source["model_config"]).to_dict()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source["model"].items())

    exp = tmp_path / "fine-tuned"
    run_entry("asr_recipes.bin.train", *train_args(tiny_corpus, exp, "model=tiny", f"init_from={source_exp / 'epoch-3.pt'}",
                                                   "trainer.max_steps=1"))
    tuned = load_checkpoint(exp / "checkpoint-1.pt")
    assert tuned["progress"]["step"] == 1 and tuned["model_config"] == config  # the checkpoint's, not model=tiny
    assert source["progress"]["step"] > 1
    steps = {float(s["step"]) for s in tuned["optimizer"]["state"].values()}
    assert steps == {1.0}  # AdamW's first step, not the source's optimizer continued
    # one Adam step from the source's weights moves each weight by at most the learning rate
    # (the bias-corrected first step is lr * g / |g|); from any other start it would be far off
    weights = dict(model.named_parameters())  # not the batch-norm statistics, which follow the data
    moved = max((tuned["model"][k] - v).abs().max().item() for k, v in source["model"].items() if k in weights)
    assert 0 < moved <= LR * (1 + 1e-3)


def test_freeze_keeps_those_weights_bit_identical(tiny_corpus, tmp_path_factory, tmp_path):
    source_exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "source")
    exp = tmp_path / "frozen"
    run_entry("asr_recipes.bin.train", *train_args(tiny_corpus, exp, f"init_from={source_exp / 'epoch-3.pt'}",
                                                   "freeze=[encoder,decoder]", "trainer.max_steps=3"))
    source, tuned = load_checkpoint(source_exp / "epoch-3.pt")["model"], load_checkpoint(exp / "checkpoint-3.pt")["model"]
    weights = {n for n, _ in build_transducer(load_checkpoint(exp / "checkpoint-3.pt")["model_config"], 30).named_parameters()}
    frozen = [k for k in source if k.startswith(("encoder.", "decoder.")) and k in weights]
    assert frozen and all(torch.equal(tuned[k], source[k]) for k in frozen)
    assert not torch.equal(tuned["joiner.output_linear.weight"], source["joiner.output_linear.weight"])


def test_freeze_refuses_a_prefix_that_names_nothing():
    model = build_transducer({"encoder": "conformer", **TINY}, 10)
    with pytest.raises(ValueError, match="'encoders' names no module of the model .* decoder, encoder, joiner"):
        freeze(model, ["encoders"])
    assert freeze(model, ["decoder.embedding"]) == ["decoder.embedding.weight"]
    assert not model.decoder.embedding.weight.requires_grad and model.joiner.output_linear.weight.requires_grad


TINY = dict(d_model=16, num_heads=2, ff_dim=32, num_layers=1, kernel_size=3, dropout=0.0, subsampling_channels=4,
            conv_norm="batch", decoder_dim=16, context_size=2, joiner_dim=16)


def imported_offline(tmp_path) -> dict:
    """The six-stack icefall model with a CTC head (icefall's char vocabulary, 11 tokens)."""
    data = torch.load(FIXTURES / "zipformer_offline.pt", weights_only=True)
    torch.save(data["state_dict"], tmp_path / "icefall.pt")
    flags = {k: ",".join(map(str, data["config"][k])) for k in ("num_heads", "encoder_unmasked_dim")}
    return import_icefall(tmp_path / "icefall.pt", FIXTURES / "files/lang_char/tokens.txt", flags).checkpoint


def test_another_vocabulary_reinitialises_exactly_the_vocabulary_layers(tmp_path, caplog):
    source = imported_offline(tmp_path)
    assert source["model_config"]["ctc_head"]
    new = CharTokenizer.train(["THE CAT", "A DOG"], word_boundary=True)  # ours: <blk>, <unk>, then letters
    torch.manual_seed(0)
    fresh = build_transducer(source["model_config"], new.vocab_size)  # what a new model starts from
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING):
        model, _, reinitialised = model_from_init_checkpoint(source, new, "imported.pt")
    assert reinitialised == ["ctc_head.linear", "decoder.embedding", "joiner.output_linear", "simple_am_proj",
                             "simple_lm_proj"]
    assert "(11 tokens): ctc_head.linear, decoder.embedding, joiner.output_linear, simple_am_proj, simple_lm_proj " \
           "are re-initialised" in caplog.text
    state = model.state_dict()
    for key, value in state.items():
        if key.startswith(VOCABULARY_LAYERS):
            assert value.size(0) == new.vocab_size and torch.equal(value, fresh.state_dict()[key]), key
        else:
            assert torch.equal(value, source["model"][key]), key


def test_the_same_token_table_loads_everything(tmp_path):
    source = imported_offline(tmp_path)
    from asr_recipes.data.icefall_tokens import tokenizer_from_icefall

    same = tokenizer_from_icefall(FIXTURES / "files/lang_char/tokens.txt")
    model, _, reinitialised = model_from_init_checkpoint(source, same, "imported.pt")
    assert reinitialised == [] and all(torch.equal(model.state_dict()[k], v) for k, v in source["model"].items())


def dummy_cuts(prefix: str, n: int) -> CutSet:
    return CutSet.from_cuts(MonoCut(id=f"{prefix}-{i}", start=0.0, duration=1.0, channel=0) for i in range(n))


def test_mux_draws_from_both_corpora_at_the_requested_ratio():
    own, other = dummy_cuts("own", 3000), dummy_cuts("other", 200)
    ids = [c.id for c in mux_with(own, other, 0.3, seed=5)]
    assert sorted(i for i in ids if i.startswith("own-")) == sorted(c.id for c in own)  # each own cut once
    share = sum(i.startswith("other-") for i in ids) / len(ids)
    # a binomial share over ~4300 draws: sd ~0.007
    assert share == pytest.approx(0.3, abs=0.03)
    drawn = [i for i in ids if i.startswith("other-")]
    assert len(set(drawn)) == len(drawn) > 200  # it laps the small corpus (a lap's ids get a _repeat suffix) ...
    assert len({i.split("_repeat")[0] for i in drawn}) >= 190  # ... drawing (nearly) all of it
    assert ids == [c.id for c in mux_with(own, other, 0.3, seed=5)]  # deterministic: a resumed epoch draws the same
    assert ids != [c.id for c in mux_with(own, other, 0.3, seed=6)]  # the next epoch draws others


def test_datamodule_mixes_the_other_parts_into_every_epoch(tiny_corpus):
    cfg = tiny_data_config(tiny_corpus, mux={"parts": ["dev-clean"], "weight": 0.5}, max_duration=30.0)
    data = DataModule(cfg, load_tokenizer(tiny_corpus.lang))
    train_ids = {c.id for c in CutSet.from_jsonl_lazy(tiny_corpus.fbank / "librispeech_cuts_train-clean-100.jsonl.gz")}
    dev_ids = {c.id for c in CutSet.from_jsonl_lazy(tiny_corpus.fbank / "librispeech_cuts_dev-clean.jsonl.gz")}

    def epoch_ids(epoch):
        return [i for b in data.train_dataloader(epoch) for i in b["cut_ids"]]

    first = epoch_ids(0)
    own = [i for i in first if i in train_ids]
    mixed = [i for i in first if i.split("_repeat")[0] in dev_ids]
    assert len(own) + len(mixed) == len(first) and len(set(own)) == len(own)
    assert len(own) >= 0.8 * len(train_ids) and mixed  # drop_last may drop a few own cuts
    assert first == epoch_ids(0) and first != epoch_ids(1)
    with pytest.raises(ValueError, match="data.mux.weight must be between 0 and 1"):
        DataModule(tiny_data_config(tiny_corpus, mux={"parts": ["dev-clean"], "weight": 1.0}), None)
