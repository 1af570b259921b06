"""Export a checkpoint for sherpa-onnx: ``python -m asr_recipes.bin.export CKPT out_dir=DIR
[int8=true] [streaming=... chunk_size=N left_context=N]`` (see conf/export.yaml).

Writes DIR/{encoder,decoder,joiner}.onnx, tokens.txt and export.json (+ ctc.onnx for a model
with a CTC head, + *.int8.onnx), in sherpa-onnx's layout of the checkpoint's encoder, only
after checking them (asr_recipes.export.exporter); a checkpoint sherpa-onnx cannot run, or a
graph that does not match the PyTorch model, is one error message and exit status 1.
The checkpoint may be given as the first argument or as checkpoint=PATH.
"""

import logging
import sys

import hydra
from omegaconf import DictConfig

from asr_recipes.bin import CONFIG_PATH, positional_checkpoint
from asr_recipes.checkpoint import CheckpointError, load_checkpoint
from asr_recipes.export.compat import ExportError
from asr_recipes.export.exporter import export_checkpoint

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        ckpt = load_checkpoint(cfg.checkpoint)
        report = export_checkpoint(ckpt, cfg.out_dir, source=str(cfg.checkpoint), int8=cfg.int8,
                                   streaming=cfg.streaming, chunk_size=cfg.chunk_size,
                                   left_context=cfg.left_context, sherpa_check=cfg.sherpa_check)
    except (CheckpointError, ExportError) as e:
        raise SystemExit(f"export: {e}") from None
    kind = (f"{report.model_type}, streaming, chunk {report.chunk_size} x 40 ms, left context {report.left_context}"
            if report.streaming else f"{report.model_type}, offline") + (", with the CTC graph" if report.ctc else "")
    log.info("wrote %s (%s) for sherpa-onnx:", cfg.out_dir, kind)
    for name, size in report.file_bytes.items():
        log.info("  %-20s %10.2f MB", name, size / 1e6)


if __name__ == "__main__":
    sys.argv = positional_checkpoint(sys.argv)
    main()
