"""Average epoch checkpoints: ``python -m asr_recipes.bin.average exp_dir=E epoch=N avg=K
[use_averaged_model=true]`` -> E/averaged-epoch-N-avg-K.pt (see conf/average.yaml and
asr_recipes.checkpoint.averaging for what the average is). ``epoch=last`` takes the newest
epoch-N.pt (training budgeted by time) and caps avg at N-1."""

import logging

import hydra
from omegaconf import DictConfig

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.checkpoint import CheckpointError, resolve_epoch_avg, save_average

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="average", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        epoch, avg = resolve_epoch_avg(cfg.exp_dir, cfg.epoch, cfg.avg)
        path = save_average(cfg.exp_dir, epoch, avg, cfg.use_averaged_model)
    except CheckpointError as e:
        raise SystemExit(f"average: {e}") from None
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
