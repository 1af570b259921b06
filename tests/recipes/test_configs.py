"""Every Hydra config composes: each primary conf/<stage>.yaml alone, and each experiment with
every primary config that selects one; each experiment builds, as train builds it, the model of
the size its config documents. The experiments are checked against the setups they claim to
reproduce (values from icefall's published RESULTS.md commands, written out here)."""

import re
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from asr_recipes.data.corpora import aishell, librispeech
from asr_recipes.data.datamodule import DataConfig
from asr_recipes.models.build import ModelConfig, build_transducer, count_parameters
from asr_recipes.training.schedules import EdenConfig, EdenScheduler
from asr_recipes.training.trainer import TrainerConfig, make_optimizer
from tests.models.test_build_transducer import expected_parameters

CONF = Path(__file__).resolve().parents[2] / "conf"
PRIMARY = sorted(p.stem for p in CONF.glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
#: Parts of a synthesized LibriSpeech-layout corpus (asr_recipes.synth.corpus).
SYNTHESIZED_PARTS = {"train-clean-100", "dev-clean", "test-clean", "dev-unseen", "test-unseen", "test-other"}


def compose_cfg(name, overrides=(), hydra_cfg=False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=hydra_cfg)


def with_required(name, overrides=()):
    """The config with every ??? key given a placeholder, fully resolved to plain containers."""
    missing = OmegaConf.missing_keys(compose_cfg(name, overrides))
    cfg = compose_cfg(name, [*overrides, *(f"{key}=/placeholder/{key}" for key in sorted(missing))])
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def selects_experiment(name):
    defaults = yaml.safe_load((CONF / f"{name}.yaml").read_text()).get("defaults", [])
    return any(isinstance(d, dict) and "experiment" in d for d in defaults)


def test_the_recipes_experiments_exist():
    assert {"mini", "librispeech", "aishell"} <= set(EXPERIMENTS)
    assert {"train", "decode"} <= {p for p in PRIMARY if selects_experiment(p)}


@pytest.mark.parametrize("name", PRIMARY)
def test_primary_config_composes_and_resolves(name):
    assert isinstance(with_required(name), dict)
    hydra = compose_cfg(name, hydra_cfg=True).hydra
    assert hydra.run.dir == "." and hydra.output_subdir is None  # conf/common/hydra.yaml took effect


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("name", [p for p in PRIMARY if selects_experiment(p)])
def test_experiment_composes_with_every_stage_that_selects_it(name, experiment):
    cfg = with_required(name, [f"experiment={experiment}"])
    DataConfig.from_dict(cfg["data"])  # unknown or mistyped data keys are errors


#: "Parameters: 78.8M with a 500-token vocabulary" (and "...; 3.37M with a 30-token vocabulary")
DOCUMENTED = re.compile(r"(\d+\.\d+)M with a (\d+)-token vocabulary")


def documented_sizes(path: Path) -> list[tuple[float, int, int]]:
    """(millions of parameters, vocabulary size, decimals given) documented in a config's comments."""
    return [(float(m), int(v), len(m.split(".")[1])) for m, v in DOCUMENTED.findall(path.read_text())]


def built_as_train_builds(overrides):
    """(model config, trainer config, build) as bin/train.py resolves and checks them from the
    composed config; build(vocab) makes the model and its optimizer for a vocabulary of that size."""
    cfg = with_required("train", overrides)
    model_config = ModelConfig.from_mapping(cfg["model"]).to_dict()
    trainer = TrainerConfig.from_dict({**cfg["trainer"], "exp_dir": "exp", "loss": cfg["loss"], "optim": cfg["optim"]})
    DataConfig.from_dict(cfg["data"])

    def build(vocab):
        model = build_transducer(model_config, vocab_size=vocab)
        return model, make_optimizer(model, trainer.optim)

    return model_config, trainer, build


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_builds_what_train_builds_at_the_documented_size(experiment):
    """Each experiment's model, built from the config train composes, has the parameter count its
    config documents (at the precision given), which a layer-by-layer count confirms; the
    optimizer holds every weight once, with the experiment's learning rate."""
    sizes = documented_sizes(CONF / "experiment" / f"{experiment}.yaml")
    assert sizes, f"conf/experiment/{experiment}.yaml documents no parameter count"
    model_config, trainer, build = built_as_train_builds([f"experiment={experiment}"])
    for millions, vocab, decimals in sizes:
        model, optimizer = build(vocab)
        n = count_parameters(model)
        if model_config["encoder"] == "conformer":  # the Zipformer's: tests/models/zipformer/test_config.py
            assert n == expected_parameters(model_config, vocab)
        assert round(n / 1e6, decimals) == millions, (experiment, vocab, n)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        # every trainable weight (the Zipformer layers' unused bypass_scale is frozen: icefall's has it too)
        assert len(params) == len({id(p) for p in params}) == len([p for p in model.parameters() if p.requires_grad])
        assert sum(p.numel() for p in params) == count_parameters(model, trainable_only=True)
        assert all(group["lr"] == trainer.optim.lr for group in optimizer.param_groups)
        EdenScheduler(optimizer, EdenConfig(**{**asdict(trainer.optim.schedule), "base_lr": trainer.optim.lr})).step(0, 0)
        del model, optimizer


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "model").glob("*.yaml") if documented_sizes(p)))
def test_model_configs_have_their_documented_size(name):
    """conf/model/<name>.yaml as train composes it (model=<name>), at each documented vocabulary;
    conformer_large also against icefall's pruned_transducer_stateless2 model (~78.6M, BPE 500)."""
    model_config, _, build = built_as_train_builds([f"model={name}"])
    for millions, vocab, decimals in documented_sizes(CONF / "model" / f"{name}.yaml"):
        n = count_parameters(build(vocab)[0])
        assert round(n / 1e6, decimals) == millions, (name, vocab, n)
    if name == "conformer_large":
        assert abs(count_parameters(build(500)[0]) - 78.6e6) < 0.005 * 78.6e6


def _group(group, option):
    return yaml.safe_load((CONF / group / f"{option}.yaml").read_text())


def test_librispeech_is_icefall_pruned_transducer_stateless2():
    cfg = with_required("train", ["experiment=librispeech"])
    assert cfg["model"] == _group("model", "conformer_large")
    loss = cfg["loss"]
    assert (loss["type"], loss["prune_range"], loss["lm_scale"], loss["am_scale"], loss["simple_loss_scale"]) == (
        "pruned", 5, 0.25, 0.0, 0.5)
    data = cfg["data"]
    assert data["corpus"] == "librispeech" and data["max_duration"] == 300
    assert data["train_parts"] == ["train-clean-100", "train-clean-360", "train-other-500"]
    assert data["test_parts"] == ["test-clean", "test-other"]
    assert set(data["train_parts"] + data["valid_parts"] + data["test_parts"]) <= set(librispeech.KNOWN_PARTS)
    assert cfg["trainer"]["num_epochs"] == 26  # icefall: --num-epochs 26, decoded at its epoch 25 (0-based)


def test_aishell_is_icefall_pruned_transducer_stateless2_with_context_1():
    cfg = with_required("train", ["experiment=aishell"])
    assert cfg["model"] == {**_group("model", "conformer_large"), "context_size": 1}
    data = cfg["data"]
    assert data["corpus"] == "aishell" and data["max_duration"] == 200
    assert (data["train_parts"], data["test_parts"]) == (["train"], ["dev", "test"])
    assert set(data["train_parts"] + data["valid_parts"] + data["test_parts"]) <= set(aishell.SPLITS)
    assert cfg["loss"]["prune_range"] == 5 and cfg["loss"]["lm_scale"] == 0.25


def test_mini_uses_the_small_model_on_the_synthesized_parts():
    cfg = with_required("train", ["experiment=mini"])
    # The small model, made cheaper per CPU step: no dropout, a lighter front end, fewer layers.
    small = {k: v for k, v in _group("model", "small").items()}
    assert cfg["model"] == {**small, "dropout": 0.0, "subsampling_channels": 32, "num_layers": 4}
    assert cfg["model"] == with_required("train", ["model=mini"])["model"]  # conf/model/mini.yaml
    data = cfg["data"]
    assert data["corpus"] == "librispeech"
    assert set(data["train_parts"] + data["valid_parts"] + data["test_parts"]) <= SYNTHESIZED_PARTS
    # Seen voices, the held-out voice, seen voices in noise: all scored by the recipe.
    assert data["test_parts"] == ["dev-clean", "dev-unseen", "test-clean", "test-unseen", "test-other"]
    assert data["musan"]["parts"] == ["noise", "speech"]  # the generated noise
    assert cfg["trainer"]["max_minutes"] and cfg["trainer"]["whole_epochs"]
    assert cfg["loss"]["rnnt_type"] == "modified"  # one symbol per frame, as deployed


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_decode_sees_the_experiment_test_parts(experiment):
    train = with_required("train", [f"experiment={experiment}"])
    decode = with_required("decode", [f"experiment={experiment}"])
    assert decode["data"]["test_parts"] == train["data"]["test_parts"]
    assert decode["data"]["corpus"] == train["data"]["corpus"]


def test_mini_with_the_zipformer_replaces_the_model_and_the_optimizer_only():
    """conf/experiment/mini_zipformer_mini.yaml (run.sh --model zipformer_mini): exactly the
    zipformer_mini model (no Conformer key left), ScaledAdam, icefall-style chunk lists the
    Zipformer takes, its schedules' batch duration; data, loss, decoding and the time budget are mini's."""
    mini = with_required("train", ["experiment=mini"])
    cfg = with_required("train", ["experiment=mini_zipformer_mini"])
    assert cfg["model"] == _group("model", "zipformer_mini")
    assert cfg == with_required("train", ["experiment=mini", "model=zipformer_mini", "optim=scaled_adam",
                                          "optim.lr=0.045", "trainer.ref_duration=3",
                                          *[f"trainer.chunk_training.{k}={v}".replace(" ", "")
                                          for k, v in cfg["trainer"]["chunk_training"].items()]])
    for key in ("data", "loss", "decoding"):
        assert cfg[key] == mini[key], key
    # the model's own schedules count batches of 3 s: 10 per 30 s batch (mini's), done by step 2000
    assert (cfg["trainer"]["ref_duration"], mini["data"]["max_duration"]) == (3, 30.0)
    assert {k: v for k, v in cfg["trainer"].items() if k not in ("chunk_training", "ref_duration")} == {
        k: v for k, v in mini["trainer"].items() if k not in ("chunk_training", "ref_duration")}
    optim = cfg["optim"]
    assert (optim["name"], optim["lr"], optim["grad_clip"]) == ("scaled_adam", 0.045, None)
    assert optim["scaled_adam"] == _group("optim", "scaled_adam")["scaled_adam"]
    model_config, trainer, build = built_as_train_builds(["experiment=mini_zipformer_mini", "model.causal=true"])
    model, _ = build(27)
    trainer.chunk_training.check_encoder(model.encoder)
    assert set(trainer.chunk_training.chunk_sizes) == {4, 8, 16, -1}
