"""Checkpoints: one self-describing format, written atomically, loaded without running code.

A checkpoint is one ``torch.save`` dict of plain data (tensors, numbers, strings, bytes,
None, and lists, tuples and dicts of them: io.PLAIN_TYPES). Besides weights and training
state it carries everything needed to rebuild the model and its input pipeline without the
training config:

    format          "asr-recipes/1"
    model_config    architecture mapping for models.build_transducer (its "encoder" key picks
                    the encoder; absent = "conformer")
    vocab_size, feature_dim
    tokenizer       Tokenizer.to_dict() (sentencepiece model bytes embedded)
    feature_config  fbank settings the model was trained on
    decoding        the recipe's decoding settings: defaults of decode / transcribe / export
                    (method, beam, max_sym_per_frame; chunk_size, left_context if streaming)
    model           state_dict;  model_avg: running-average state_dict (float64) or None
    optimizer, scheduler, grad_scaler, sampler, rng     (training state; rng: checkpoint.rng)
    progress        {"epoch", "step", "batches_in_epoch", "average_count", "train_seconds", ...}
    train_config    the resolved training config (plain dicts), for the record
    averaging       (averages only) how the weights were averaged

Modules: io (format, save, safe load), files (names in an experiment directory, resume),
averaging (running average, epoch averages), choice (what decode reads), model
(model_from_checkpoint), rng (generator states as plain data), upgrade (converting an
earlier version's file: the only unsafe load), lm (language-model checkpoints: their own
format name, the same writer and safe reader).
"""

from asr_recipes.checkpoint.averaging import (
    TRAINING_ONLY, average_between, average_epochs, average_state_dicts, init_running_average, save_average,
    update_running_average,
)
from asr_recipes.checkpoint.choice import CheckpointChoice, choose_checkpoint, weights_key
from asr_recipes.checkpoint.files import (
    LAST, averaged_path, epoch_checkpoint, epoch_checkpoints, load_latest, prune_step_checkpoints,
    remove_stale_temp_files, resolve_epoch_avg, resume_candidates, step_checkpoints,
)
from asr_recipes.checkpoint.io import (
    FORMAT, LATEST, CheckpointError, UnsafeCheckpointError, check_plain, load_checkpoint, save_checkpoint,
)
from asr_recipes.checkpoint.model import model_from_checkpoint
from asr_recipes.checkpoint.rng import rng_state, set_rng_state

__all__ = [
    "FORMAT", "LAST", "LATEST", "TRAINING_ONLY", "CheckpointChoice", "CheckpointError", "UnsafeCheckpointError",
    "average_between", "average_epochs", "average_state_dicts", "averaged_path", "check_plain", "choose_checkpoint",
    "epoch_checkpoint", "epoch_checkpoints", "init_running_average", "load_checkpoint", "load_latest",
    "model_from_checkpoint", "prune_step_checkpoints", "remove_stale_temp_files", "resolve_epoch_avg",
    "resume_candidates", "rng_state", "save_average", "save_checkpoint", "set_rng_state", "step_checkpoints",
    "update_running_average", "weights_key",
]
