"""Zipformer encoder (icefall's Zipformer2) on plain PyTorch, weight-compatible with icefall.

Public API:
    Zipformer(...)                         the encoder (encoder.py): forward, streaming_forward, states
    set_batch_count(model, batch_count)    feed the training schedules (schedule.py), once per step
    ScheduledFloat                         a value following a schedule in the batch count
"""

from asr_recipes.models.zipformer.encoder import Zipformer
from asr_recipes.models.zipformer.schedule import ScheduledFloat, set_batch_count

__all__ = ["ScheduledFloat", "Zipformer", "set_batch_count"]
