"""Synthesize a speech corpus: ``python -m asr_recipes.bin.synthesize out_dir=<dir>
layout=librispeech task=commands size=full seed=0 flite_voices=[kal16,rms,slt] heldout_voice=awb
noisy_snr=10`` (see conf/synthesize.yaml)."""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.synth.corpus import SynthesisError, synthesize

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="synthesize", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        options = {}
        if cfg.layout == "librispeech":
            options = dict(flite_voices=list(cfg.flite_voices), heldout_voice=cfg.heldout_voice,
                           noisy_snr=cfg.noisy_snr, noise_corpus=cfg.noise_corpus,
                           margins=cfg.silence_margins)
        root = synthesize(cfg.layout, Path(cfg.out_dir), task=cfg.task, size=cfg.size,
                          seed=cfg.seed, num_jobs=cfg.num_jobs, **options)
    except SynthesisError as e:
        # A user error (missing tool, bad option, foreign directory) with its fix: no traceback.
        raise SystemExit(f"error: {e}") from None
    log.info("corpus ready: %s", root)


if __name__ == "__main__":
    main()
