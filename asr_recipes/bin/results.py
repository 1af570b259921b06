"""Results table: ``python -m asr_recipes.bin.results exp_dir=E [results_md=F] title="..."`` writes
a dated markdown section with E's decoding results (error rates, speed, model size, training
time, machine) to F (default E/RESULTS.md, the run's own table; replaced on a rerun) and prints it."""

import hydra
from omegaconf import DictConfig

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.decoding.report import write_results


@hydra.main(config_path=CONFIG_PATH, config_name="results", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(write_results(cfg.exp_dir, cfg.results_md, cfg.title), end="")


if __name__ == "__main__":
    main()
