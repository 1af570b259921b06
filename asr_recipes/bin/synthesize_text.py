"""Write language-model text from a synthesized corpus' sentence generator: ``python -m
asr_recipes.bin.synthesize_text out=F task=commands count=20000 seed=0`` (conf/synthesize_text.yaml).

F gets ``count`` sentences of the task's training split, one per line (asr_recipes.synth.text):
with the corpus' own seed, none of its dev or test sentences. Train an LM on it with
``python -m asr_recipes.bin.train_lm "text.files=[F]" ...``.
"""

import logging

import hydra
from omegaconf import DictConfig

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.synth.text import write_training_text

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="synthesize_text", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        path = write_training_text(cfg.out, cfg.task, cfg.count, cfg.seed)
    except ValueError as e:
        raise SystemExit(f"synthesize_text: {e}") from None
    log.info("%d %s training sentences (seed %d) -> %s", cfg.count, cfg.task, cfg.seed, path)


if __name__ == "__main__":
    main()
