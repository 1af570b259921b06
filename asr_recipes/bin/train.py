"""Train a transducer: ``python -m asr_recipes.bin.train experiment=<recipe> exp_dir=...``.

Works as one process or under torchrun (``torchrun --nproc_per_node N -m asr_recipes.bin.train``).
Re-running the same command resumes from the newest checkpoint in exp_dir. ``init_from=CKPT``
starts from another checkpoint's architecture and weights (fine-tuning; asr_recipes.training.init_from),
``freeze=[prefix,...]`` keeps those modules' weights fixed.
"""

import logging

import hydra
import torch.distributed as torch_dist
from omegaconf import DictConfig, OmegaConf

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.checkpoint import CheckpointError, load_checkpoint
from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.decoding.options import check_decoding_defaults
from asr_recipes.models.build import ModelConfig, build_transducer, count_parameters
from asr_recipes.training import distributed
from asr_recipes.training.init_from import InitFromError, freeze, model_from_init_checkpoint
from asr_recipes.training.monitor import setup_logging
from asr_recipes.training.trainer import Trainer, TrainerConfig, seed_everything

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    dist_info = distributed.setup(cfg.device, cfg.process_group)
    setup_logging(cfg.exp_dir, dist_info.is_main)
    if dist_info.distributed and dist_info.is_main:  # what gpu_check reads to name the backend used
        log.info("process group: %s backend, world size %d, device %s", torch_dist.get_backend(),
                 dist_info.world_size, dist_info.device)
    tokenizer = load_tokenizer(cfg.tokenizer_dir)
    seed_everything(cfg.trainer.seed)  # identical initial weights on every rank and every run
    if cfg.init_from:  # fine-tuning: the checkpoint's architecture and weights, a fresh optimizer and schedule
        try:
            model, model_config, _ = model_from_init_checkpoint(load_checkpoint(cfg.init_from), tokenizer,
                                                                str(cfg.init_from), resolved["model"])
        except (CheckpointError, InitFromError) as e:
            raise SystemExit(f"train: {e}") from None
    else:
        model_config = ModelConfig.from_mapping(resolved["model"]).to_dict()
        model = build_transducer(model_config, vocab_size=tokenizer.vocab_size)
    try:
        freeze(model, list(cfg.freeze or []))
    except ValueError as e:
        raise SystemExit(f"train: {e}") from None
    if dist_info.is_main:
        log.info("model: %.2fM parameters, vocabulary %d", count_parameters(model) / 1e6, tokenizer.vocab_size)
        _ensure_dir(cfg.exp_dir)
        OmegaConf.save(cfg, f"{cfg.exp_dir}/train-config.yaml")
    trainer_cfg = TrainerConfig.from_dict(
        {**resolved["trainer"], "exp_dir": cfg.exp_dir, "loss": resolved["loss"], "optim": resolved["optim"],
         "decoding": check_decoding_defaults(resolved["decoding"])}
    )
    try:
        data = DataModule(resolved["data"], tokenizer, model.encoder.output_lengths)
        Trainer(trainer_cfg, model, model_config, tokenizer, data, dist_info, record=resolved).fit()
        # Leave together: rank 0 is still writing the last checkpoint when the others finish,
        # and no rank should tear its process group down while a peer is still working.
        distributed.barrier(dist_info)
    except CheckpointError as e:  # e.g. resuming from a checkpoint that needs upgrade_checkpoint
        raise SystemExit(f"train: {e}") from None
    finally:
        distributed.cleanup()


def _ensure_dir(path: str) -> bool:
    from pathlib import Path

    Path(path).mkdir(parents=True, exist_ok=True)
    return True


if __name__ == "__main__":
    main()
