"""Decode test sets: ``python -m asr_recipes.bin.decode exp_dir=E [checkpoint=PATH | epoch=N avg=K]
[methods=[greedy_search,modified_beam_search] beam=4 max_sym_per_frame=1] [chunk_size=8 left_context=64
streaming=true] [hotwords_file=F hotwords_score=S] [nbest=N] [blank_penalty=P] [timestamps=ctc|search]
[lm=LM lm_scale=S lodr_bigram=B lodr_scale=S lm_rescore=false] data.test_parts=[...]``.

Model, tokenizer and the default search settings come from the checkpoint (no training
flags); anything given explicitly overrides them. Streaming models decode with their chunk
settings: simulated (one pass with the chunk mask) or, with streaming=true, chunk by chunk.
Writes E/<method>/{recogs,errs,wer-summary}-<part>-<key>.txt, ctm-<part>-<key>.ctm (word
times), speed-<part>-<key>.json (and nbest-/hotword-recall- files with nbest / hotwords) and
prints a %WER (or %CER) line and a %SPEED line per part and method (and a %HOTWORDS recall
line where the hotwords are spoken); see conf/decode.yaml and asr_recipes.decoding.runner.
"""

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.checkpoint import CheckpointError, choose_checkpoint, model_from_checkpoint, resolve_epoch_avg
from asr_recipes.data.datamodule import DataModule
from asr_recipes.decoding import make_search
from asr_recipes.decoding.hotwords import HotwordsError, read_hotwords
from asr_recipes.decoding.lm_fusion import check_vocabulary
from asr_recipes.decoding.runner import decode_test_sets, machine_info
from asr_recipes.decoding.settings import resolve
from asr_recipes.models.build import count_parameters
from asr_recipes.training.distributed import resolve_device

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="decode", version_base="1.3")
def main(cfg: DictConfig) -> None:
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    if not data_cfg.get("test_parts"):
        raise SystemExit("decode: no test parts; pass data.test_parts=[part,...]")
    device = resolve_device(cfg.device)
    try:
        epoch, avg = (cfg.epoch, cfg.avg) if cfg.checkpoint else resolve_epoch_avg(cfg.exp_dir, cfg.epoch, cfg.avg)
        choice = choose_checkpoint(cfg.exp_dir, cfg.checkpoint, epoch, avg, cfg.use_averaged_model)
        log.info("decoding with %s (%s) on %s", choice.key, choice.source, device)
        model, tokenizer = model_from_checkpoint(choice.checkpoint, device, choice.source)
    except CheckpointError as e:
        raise SystemExit(f"decode: {e}") from None
    progress = choice.checkpoint.get("progress", {})
    extra = {"checkpoint": choice.source, "machine": machine_info(device),
             "model": {"num_parameters": count_parameters(model), "train_seconds": progress.get("train_seconds"),
                       "epoch": progress.get("epoch"), "step": progress.get("step")}}
    hotwords = []
    if cfg.hotwords_file:
        try:
            hotwords = read_hotwords(cfg.hotwords_file, tokenizer, cfg.hotwords_score)
        except HotwordsError as e:
            raise SystemExit(f"decode: {e}") from None
    try:
        settings = resolve(choice.checkpoint, beam=cfg.beam, max_sym_per_frame=cfg.max_sym_per_frame,
                           max_sym_per_utt=cfg.max_sym_per_utt, blank_penalty=cfg.blank_penalty,
                           chunk_size=cfg.chunk_size, left_context=cfg.left_context, streaming=cfg.streaming,
                           hotwords=tuple(h.option for h in hotwords), nbest=cfg.nbest,
                           lm=dict(lm=cfg.lm, lm_scale=cfg.lm_scale, lodr_bigram=cfg.lodr_bigram,
                                   lodr_scale=cfg.lodr_scale, lm_rescore=cfg.lm_rescore),
                           timestamps=cfg.timestamps, encoder=model.encoder)
        choice.checkpoint = None  # frees the state dicts: the weights are in the model now
        methods = list(cfg.methods) if cfg.methods else [settings.method]
        check_vocabulary(settings.options(methods[0]), tokenizer.tokens, device)  # the LM is read once, here
        searches = {m: make_search(model, settings.options(m)) for m in methods}
    except ValueError as e:  # options that do not fit together (e.g. hotwords with greedy search)
        raise SystemExit(f"decode: {e}") from None
    if hotwords:
        log.info("hotwords %s: %d phrases, key part hotwords-%s", cfg.hotwords_file, len(hotwords),
                 settings.options(methods[0]).hotwords_digest())
    if settings.chunk is not None:
        log.info("streaming model: %s", settings.chunk.key())
    loaders = DataModule(data_cfg, tokenizer, model.encoder.output_lengths).test_dataloaders()
    decode_test_sets(cfg.exp_dir, model, tokenizer, loaders, searches, choice.key, extra, device,
                     chunk=settings.chunk, hotword_phrases=[h.text for h in hotwords])


if __name__ == "__main__":
    main()
