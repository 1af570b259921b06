"""Count the LODR token bigram: ``python -m asr_recipes.bin.token_bigram tokenizer_dir=T
manifests=[...] out=F [discount=D]``.

Reads the transcripts of the training manifests, tokenizes them with the transducer's
tokenizer and writes the smoothed back-off bigram (asr_recipes.lm.bigram) to F; see
conf/token_bigram.yaml. Decode with ``lodr_bigram=F lodr_scale=...``.
"""

import logging

import hydra
from omegaconf import DictConfig

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.training.lm_text import estimate_bigram
from asr_recipes.data.tokenizer import load_tokenizer

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="token_bigram", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        tokenizer = load_tokenizer(cfg.tokenizer_dir)
        bigram = estimate_bigram(list(cfg.manifests), tokenizer, cfg.discount)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"token_bigram: {e}") from None
    bigram.save(cfg.out, tokenizer.tokens)
    log.info("%s -> %s", bigram.describe(), cfg.out)


if __name__ == "__main__":
    main()
