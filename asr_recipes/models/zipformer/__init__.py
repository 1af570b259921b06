"""Zipformer encoder (Yao et al. 2023, arXiv 2310.11230; icefall's Zipformer2) on plain PyTorch.

With icefall's weights it computes what icefall's code computes (tests/models/zipformer, on
reference outputs written by icefall's own code: tests/fixtures/icefall).

Modules, outermost first:
    config.py            ZipformerConfig (the encoder's keys of conf/model/zipformer_*.yaml), its
                         builder, icefall's decoder keys and initialisation (the model registry,
                         asr_recipes.models.build, builds the transducer: encoder: zipformer)
    encoder.py           Zipformer: front end, six stacks, output downsampling; forward / streaming_forward
    streaming_states.py  the streaming states (icefall's layout), init / stack / unstack
    stack.py             stacks of layers, learned down/upsampling between frame rates
    layer.py             one Zipformer block, the bypass
    attention.py         positional encoding, attention weights, SelfAttention, NonlinAttention
    convolution.py       convolution module (chunk-causal for streaming), feed-forward module
    frontend.py          Conv2d + ConvNeXt front end (100 Hz -> 50 Hz)
    scaling.py           BiasNorm, scaled initial weights, activation+dropout+linear, dropouts
    swoosh.py            SwooshL / SwooshR (+ triton_swoosh.py: their CUDA kernels)
    constraints.py       gradient-only training constraints (Balancer, Whiten, ...)
    schedule.py          ScheduledFloat and set_batch_count
    icefall_names.py     icefall state-dict names -> ours (a prefix change)

Training needs, besides the usual loop (asr_recipes.training does all three):
    model.set_batch_count(batch_idx)     once per step, before the forward (the schedules)
    a chunk size per batch for causal models, a multiple of encoder.chunk_multiple (4)
    DistributedDataParallel(find_unused_parameters=True): on some steps a module's output is
        skipped entirely (e.g. the positional scores), so its parameters get no gradient
        (encoder.skips_modules_in_training)
"""

from asr_recipes.models.zipformer.encoder import Zipformer
from asr_recipes.models.zipformer.schedule import ScheduledFloat, set_batch_count

__all__ = ["ScheduledFloat", "Zipformer", "set_batch_count"]
