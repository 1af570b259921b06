"""The GPU check: ``python -m asr_recipes.bin.gpu_check [mode=gpu|smoke] [parts=[...]]``
(``make gpu-check``; see conf/gpu_check.yaml and asr_recipes/tools/gpu_check/check.py). Writes one
markdown report; exits 1 if a part failed."""

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.tools.gpu_check.check import run_check


@hydra.main(config_path=CONFIG_PATH, config_name="gpu_check", version_base="1.3")
def main(cfg: DictConfig) -> None:
    status = run_check(OmegaConf.to_container(cfg, resolve=True))
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
