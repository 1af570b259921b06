"""Import an icefall model: ``python -m asr_recipes.bin.import_icefall CKPT tokens=<bpe.model |
tokens.txt> out_dir=DIR [use_averaged_model=true avg=K] [train.py flags, e.g. num_heads=4,4,4,8,4,4]``.

Writes DIR/imported.pt (a self-describing checkpoint: decode, transcribe, export, prune_report
and ``train init_from=`` take it as it is) and DIR/lang (its tokenizer, for fine-tuning with
the same vocabulary), then prints where every size came from (asr_recipes.checkpoint.icefall_import).
"""

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from asr_recipes.bin import CONFIG_PATH, comma_lists, positional_checkpoint
from asr_recipes.checkpoint.icefall_files import IcefallImportError
from asr_recipes.checkpoint.icefall_import import import_icefall, summary, write_import
from asr_recipes.models.zipformer.icefall_shapes import ARCHITECTURE_FLAGS

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="import_icefall", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if not (cfg.checkpoint and cfg.tokens and cfg.out_dir):
        raise SystemExit("import_icefall: usage: python -m asr_recipes.bin.import_icefall CKPT "
                         "tokens=<bpe.model | tokens.txt> out_dir=DIR [train.py flags]")
    values = OmegaConf.to_container(cfg, resolve=True)
    flags = {k: values[k] for k in ARCHITECTURE_FLAGS if values.get(k) is not None}
    try:
        result = import_icefall(cfg.checkpoint, cfg.tokens, flags, bool(cfg.use_averaged_model), int(cfg.avg),
                                cfg.chunk_size, cfg.left_context_frames)
        path = write_import(result, cfg.out_dir)
    except IcefallImportError as e:
        raise SystemExit(f"import_icefall: {e}") from None
    print(summary(result))
    print(f"wrote {path} and the tokenizer directory {path.parent / 'lang'}")


if __name__ == "__main__":
    sys.argv = comma_lists(positional_checkpoint(sys.argv), ARCHITECTURE_FLAGS)
    main()
