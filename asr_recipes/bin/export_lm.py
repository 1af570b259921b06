"""Export an RNN-LM (and the LODR bigram) for sherpa-onnx: ``python -m asr_recipes.bin.export_lm
lm=L out_dir=D [bigram=B]``.

Writes D/lm-with-state.onnx (streaming recognizers), D/lm-no-state.onnx (offline), with
``bigram`` D/lodr-2gram.fst, and D/lm-export.json; see asr_recipes.export.lm_onnx for the
layouts and the scale conventions (sherpa-onnx adds lodr_scale: pass it negative).
"""

import json
import logging

import hydra
from omegaconf import DictConfig

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.export.compat import ExportError
from asr_recipes.export.lm_onnx import export_lm_checkpoint

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="export_lm", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        info = export_lm_checkpoint(cfg.lm, cfg.out_dir, cfg.bigram)
    except ExportError as e:
        raise SystemExit(f"export_lm: {e}") from None
    log.info("exported to %s: %s", cfg.out_dir, json.dumps(info["files"]))


if __name__ == "__main__":
    main()
