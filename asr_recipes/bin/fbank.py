"""Compute 80-dim fbank features for prepared manifests: ``python -m asr_recipes.bin.fbank
corpus=librispeech manifest_dir=<dir> out_dir=<dir> speed_perturb=true num_jobs=2``
(conf/fbank.yaml)."""

import logging

import hydra
from omegaconf import DictConfig

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.data.corpora import get_corpus
from asr_recipes.data.features import TooManyFailuresError, compute_fbank

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="fbank", version_base="1.3")
def main(cfg: DictConfig) -> None:
    corpus = get_corpus(cfg.corpus)
    parts = corpus.parts_or_default(cfg.parts)
    try:
        compute_fbank(
            cfg.manifest_dir, cfg.corpus, parts, cfg.out_dir,
            speed_perturb=cfg.speed_perturb, num_jobs=cfg.num_jobs,
            train_parts=[p for p in parts if corpus.is_train_part(p)],
            cut_window=corpus.cut_window, max_failed_fraction=cfg.max_failed_fraction, seed=cfg.seed,
            reverb_prob=cfg.reverb_prob,
        )
    except (FileNotFoundError, TooManyFailuresError) as e:
        # User errors whose message names the file and the fix: no traceback needed.
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":  # required: num_jobs > 1 spawns worker processes
    main()
