"""A tiny model trained for three short epochs on the tiny corpus, once per test session.

Every optimizer step leaves a checkpoint-<step>.pt (save_every_n=1, nothing pruned) and the
running average is updated every step, so tests can form the mean of the models between
two epochs from the step checkpoints themselves.
"""

import shutil
from pathlib import Path

import torch

from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.models.build import build_transducer
from asr_recipes.training.distributed import DistInfo
from asr_recipes.training.objective import LossConfig
from asr_recipes.training.trainer import OptimConfig, Trainer, TrainerConfig, seed_everything
from tests.conftest import tiny_data_config

MODEL = dict(d_model=32, num_heads=2, ff_dim=64, num_layers=2, kernel_size=7, dropout=0.1,
             subsampling_channels=8, conv_norm="batch", decoder_dim=32, context_size=2, joiner_dim=32)
NUM_EPOCHS = 3
_TRAINED: dict = {}


def trained_exp(corpus, tmp_path_factory, dest: Path, causal: bool = False, decoding: dict | None = None) -> Path:
    """Copies the session's trained exp dir to ``dest`` (tests write into their copy).
    causal: a streaming model (dynamic chunk training) instead of the offline one; decoding:
    the settings its checkpoints record (the recipe's ``decoding`` config)."""
    key = (str(corpus.root), causal, tuple(sorted((decoding or {}).items())))
    if key not in _TRAINED:
        exp = tmp_path_factory.mktemp("trained_exp")
        tokenizer = load_tokenizer(corpus.lang)
        seed_everything(0)
        arch = {**MODEL, "causal": causal}
        model = build_transducer(arch, tokenizer.vocab_size)
        cfg = TrainerConfig(exp_dir=str(exp), seed=0, num_epochs=NUM_EPOCHS, save_every_n=1, keep_last_k=0,
                            average_period=1, log_every_n=1000, validate=False, tensorboard=False,
                            progress_bar=False, loss=LossConfig(warm_step=4), optim=OptimConfig(lr=0.003),
                            decoding=dict(decoding or {}))
        data = DataModule(tiny_data_config(corpus), tokenizer)
        cpu = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
        Trainer(cfg, model, arch, tokenizer, data, cpu).fit()
        _TRAINED[key] = exp
    shutil.copytree(_TRAINED[key], dest)
    return dest


def lower_blank_logit(exp: Path, amount: float = 2.0) -> None:
    """Lower the joiner's blank bias in every epoch checkpoint of ``exp`` (weights and running
    average alike, so every kind of average shifts by the same amount): the barely trained
    model then emits symbols instead of blank only, and decoding output depends on the audio."""
    for path in sorted(Path(exp).glob("epoch-*.pt")):
        ckpt = torch.load(path, weights_only=True)
        for state in (ckpt["model"], ckpt["model_avg"]):
            bias = state["joiner.output_linear.bias"].clone()
            bias[0] -= amount
            state["joiner.output_linear.bias"] = bias
        torch.save(ckpt, path)
