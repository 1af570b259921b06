"""Train the tokenizer on a manifest's transcripts: ``python -m asr_recipes.bin.tokenizer
cuts=<manifest.jsonl.gz> out_dir=<dir> kind=bpe vocab_size=500`` (see conf/tokenizer.yaml)."""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.data.tokenizer import ensure_tokenizer

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="tokenizer", version_base="1.3")
def main(cfg: DictConfig) -> None:
    tok = ensure_tokenizer(
        Path(cfg.cuts), Path(cfg.out_dir), kind=cfg.kind, vocab_size=cfg.vocab_size,
        min_count=cfg.min_count, word_boundary=cfg.word_boundary,
        character_coverage=cfg.character_coverage, force=cfg.force,
    )
    log.info("tokenizer in %s: kind=%s vocab_size=%d", cfg.out_dir, cfg.kind, tok.vocab_size)


if __name__ == "__main__":
    main()
