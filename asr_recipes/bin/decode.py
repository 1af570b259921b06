"""Decode test sets: ``python -m asr_recipes.bin.decode exp_dir=E [checkpoint=PATH | epoch=N avg=K]
methods=[greedy_search,modified_beam_search] beam=4 max_sym_per_frame=1 data.test_parts=[...]``.

Model and tokenizer come from the checkpoint (no training flags). Writes
E/<method>/{recogs,errs,wer-summary}-<part>-<key>.txt and speed-<part>-<key>.json and
prints a %WER (or %CER) line and a %SPEED line per part and method (see conf/decode.yaml).
"""

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.data.datamodule import DataModule
from asr_recipes.decoding import DecodingOptions, make_search
from asr_recipes.decoding.checkpoints import choose_checkpoint, model_from_checkpoint
from asr_recipes.training.checkpoint import resolve_epoch_avg
from asr_recipes.training.distributed import resolve_device
from asr_recipes.decoding.runner import decode_test_sets, machine_info
from asr_recipes.models.build import count_parameters

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="decode", version_base="1.3")
def main(cfg: DictConfig) -> None:
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    if not data_cfg.get("test_parts"):
        raise SystemExit("decode: no test parts; pass data.test_parts=[part,...]")
    device = resolve_device(cfg.device)
    epoch, avg = (cfg.epoch, cfg.avg) if cfg.checkpoint else resolve_epoch_avg(cfg.exp_dir, cfg.epoch, cfg.avg)
    choice = choose_checkpoint(cfg.exp_dir, cfg.checkpoint, epoch, avg, cfg.use_averaged_model)
    log.info("decoding with %s (%s) on %s", choice.key, choice.source, device)
    model, tokenizer = model_from_checkpoint(choice.checkpoint, device)
    progress = choice.checkpoint.get("progress", {})
    extra = {"checkpoint": choice.source, "machine": machine_info(device),
             "model": {"num_parameters": count_parameters(model), "train_seconds": progress.get("train_seconds"),
                       "epoch": progress.get("epoch"), "step": progress.get("step")}}
    choice.checkpoint = None  # frees the state dicts: the weights are in the model now
    searches = {m: make_search(model, DecodingOptions(method=m, beam=cfg.beam, max_sym_per_frame=cfg.max_sym_per_frame,
                                                      max_sym_per_utt=cfg.max_sym_per_utt))
                for m in cfg.methods}
    loaders = DataModule(data_cfg, tokenizer).test_dataloaders()
    decode_test_sets(cfg.exp_dir, model, tokenizer, loaders, searches, choice.key, extra, device)


if __name__ == "__main__":
    main()
