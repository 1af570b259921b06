"""Train a token LSTM language model: ``python -m asr_recipes.bin.train_lm lm_dir=D tokenizer_dir=T
[lm_model=librispeech|small] text.files=[...] text.manifests=[...] text.synthetic={...} dev.manifests=[...]``.

Writes D/epoch-<N>.pt (asr_recipes.checkpoint.lm) and logs train and dev perplexities; see
conf/train_lm.yaml and asr_recipes.training.lm_trainer. Decode with it:
``python -m asr_recipes.bin.decode ... methods=[modified_beam_search] lm=D/epoch-N.pt lm_scale=0.3``.
"""

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.training.distributed import resolve_device
from asr_recipes.training.lm_trainer import run

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="train_lm", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run(OmegaConf.to_container(cfg, resolve=True), resolve_device(cfg.device))
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"train_lm: {e}") from None


if __name__ == "__main__":
    main()
