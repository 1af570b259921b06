"""Prepare lhotse manifests of a corpus: ``python -m asr_recipes.bin.prepare
corpus=librispeech dl_dir=<dir> out_dir=<dir> parts=[...] download=false [lm_text=true]``
(conf/prepare.yaml); lm_text=true also fetches the corpus' language-model text."""

import logging

import hydra
from lhotse.audio.utils import AudioLoadingError
from omegaconf import DictConfig

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.data.corpora import CorpusLayoutError, get_corpus

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="prepare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    corpus = get_corpus(cfg.corpus)
    parts = corpus.parts_or_default(cfg.parts)
    try:
        if cfg.lm_text:
            if corpus.download_lm_text is None:
                raise CorpusLayoutError(f"{cfg.corpus} has no language-model text to download; set lm_text=false")
            log.info("LM text: %s", corpus.download_lm_text(cfg.dl_dir))
        if cfg.download:
            corpus.download(cfg.dl_dir, parts)
        manifests = corpus.prepare(cfg.dl_dir, cfg.out_dir, parts)
    except (CorpusLayoutError, AudioLoadingError) as e:
        # A user error with its fix in the message: no traceback needed.
        raise SystemExit(f"error: {e}") from None
    for part, kinds in manifests.items():
        log.info("%s %s: %d recordings -> %s", cfg.corpus, part, len(kinds["recordings"]), cfg.out_dir)


if __name__ == "__main__":
    main()
