"""A tiny model trained for three short epochs on the tiny corpus, once per test session.

Every optimizer step leaves a checkpoint-<step>.pt (save_every_n=1, nothing pruned) and the
running average is updated every step, so tests can form the mean of the models between
two epochs from the step checkpoints themselves.
"""

import shutil
from pathlib import Path

import torch
import yaml

from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.models.build import build_transducer
from asr_recipes.training.distributed import DistInfo
from asr_recipes.training.objective import ChunkTrainingConfig, LossConfig
from asr_recipes.training.schedules import EdenConfig
from asr_recipes.training.trainer import OptimConfig, Trainer, TrainerConfig, seed_everything
from tests.conftest import tiny_data_config

MODEL = dict(d_model=32, num_heads=2, ff_dim=64, num_layers=2, kernel_size=7, dropout=0.1,
             subsampling_channels=8, conv_norm="batch", decoder_dim=32, context_size=2, joiner_dim=32)
ZIPFORMER_TINY = Path(__file__).parents[2] / "conf" / "model" / "zipformer_tiny.yaml"
NUM_EPOCHS = 3
_TRAINED: dict = {}


def trained_exp(corpus, tmp_path_factory, dest: Path, causal: bool = False, decoding: dict | None = None,
                zipformer: bool = False) -> Path:
    """Copies the session's trained exp dir to ``dest`` (tests write into their copy).
    causal: a streaming model (dynamic chunk training) instead of the offline one; decoding:
    the settings its checkpoints record (the recipe's ``decoding`` config); zipformer: instead of
    the tiny Conformer, conf/model/zipformer_tiny.yaml with a CTC head (loss.ctc_scale 0.2),
    trained with ScaledAdam (causal ones on icefall's chunk lists)."""
    key = (str(corpus.root), causal, tuple(sorted((decoding or {}).items())), zipformer)
    if key not in _TRAINED:
        exp = tmp_path_factory.mktemp("trained_exp")
        tokenizer = load_tokenizer(corpus.lang)
        seed_everything(0)
        settings = dict(loss=LossConfig(warm_step=4), optim=OptimConfig(lr=0.003))
        if zipformer:
            arch = {**yaml.safe_load(ZIPFORMER_TINY.read_text()), "causal": causal, "ctc_head": True}
            settings = dict(loss=LossConfig(warm_step=4, ctc_scale=0.2),
                            optim=OptimConfig(name="scaled_adam", lr=0.045, grad_clip=None,
                                              schedule=EdenConfig(warmup_batches=5)),
                            chunk_training=ChunkTrainingConfig(chunk_sizes=[4, 8, -1], left_contexts=[16, -1]))
        else:
            arch = {**MODEL, "causal": causal}
        model = build_transducer(arch, tokenizer.vocab_size)
        cfg = TrainerConfig(exp_dir=str(exp), seed=0, num_epochs=NUM_EPOCHS, save_every_n=1, keep_last_k=0,
                            average_period=1, log_every_n=1000, validate=False, tensorboard=False,
                            progress_bar=False, decoding=dict(decoding or {}), **settings)
        data = DataModule(tiny_data_config(corpus), tokenizer, model.encoder.output_lengths)
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


def standardise_encoder_frames(exp: Path, features: list, chunk: tuple[int, int] = (0, -1), gain: float = 3.0) -> None:
    """Fold a standardisation of the encoder frames into the joiner's encoder projection of every
    epoch checkpoint of ``exp``: per channel, the mean and standard deviation of the frames the
    newest epoch's model gives ``features`` (a list of (T, F) tensors) with ``chunk`` =
    (chunk_size, left_context), times ``gain``. The same affine map goes into every weight set
    (weights and running averages of all epochs), so averages of them are rigged alike. A barely
    trained Zipformer's frames vary little around a large constant, so its joiner says the same
    on every frame; after this its decisions follow the audio (what icefall's reference fixtures
    do to their joiner, tests/fixtures/icefall/README.md)."""
    paths = sorted(Path(exp).glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    newest = torch.load(paths[-1], weights_only=True)
    model = build_transducer(newest["model_config"], newest["vocab_size"], newest["feature_dim"]).eval()
    model.load_state_dict(newest["model"])
    with torch.no_grad():
        frames = torch.cat([model.encode(f[None], torch.tensor([f.size(0)]), *chunk)[0][0] for f in features])
    mean, scale = frames.mean(0).double(), gain / frames.std(0).double()  # (D,) each
    for path in paths:
        ckpt = torch.load(path, weights_only=True)
        for state in (ckpt["model"], ckpt["model_avg"]):
            weight, bias = state["joiner.encoder_proj.weight"], state["joiner.encoder_proj.bias"]  # (J, D), (J,)
            scaled = weight.double() * scale
            state["joiner.encoder_proj.weight"] = scaled.to(weight.dtype)
            state["joiner.encoder_proj.bias"] = (bias.double() - scaled @ mean).to(bias.dtype)
        torch.save(ckpt, path)
