"""Build what a GPU run of the GPU check carries: ``python -m asr_recipes.bin.gpu_prepare``
(``make gpu-prepare``; see conf/gpu_prepare.yaml): a synthesized-data bundle and the wheels
the GPU machine lacks, in ``.gpu-check/``."""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.synth.corpus import SynthesisError
from asr_recipes.tools.gpu_check.bundle import BundleSpec
from asr_recipes.tools.gpu_check.prepare import prepare

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="gpu_prepare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    spec = BundleSpec(**OmegaConf.to_container(cfg.bundle, resolve=True))
    try:
        done = prepare(Path(cfg.out_dir), Path(cfg.scratch_dir), spec, cfg.wheels, str(cfg.python_version),
                       cfg.num_jobs, cfg.max_mib)
    except (SynthesisError, RuntimeError) as e:
        raise SystemExit(f"error: {e}") from None
    parts = done["bundle"]["parts"]
    print(f"{cfg.out_dir}: bundle {done['mib'].get('bundle')} MiB ("
          + ", ".join(f"{p} {v['utterances']} utterances, {v['hours']:.2f} h" for p, v in parts.items())
          + f"), wheels {done['mib'].get('wheels', '-')} MiB")


if __name__ == "__main__":  # required: num_jobs > 1 spawns worker processes
    main()
