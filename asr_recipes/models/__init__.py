"""Transducer models: front ends, encoders, stateless decoder, joiner, Transducer.

Public API:
    build_transducer(model_cfg, vocab_size, feature_dim=80) -> Transducer
    ModelConfig.from_mapping(cfg) / .to_dict()      the architecture keys of conf/model/*.yaml;
                                                    its "encoder" key picks an entry of build.ENCODERS
                                                    (conformer, zipformer), the transducer keys
                                                    (build.TransducerKeys) are every encoder's
    Encoder                                         the contract every encoder keeps (encoder.py)
    LatticeConfig                                   prune_range, lm/am scales, delay penalty, topology
    count_parameters(model) -> int
    Transducer.forward(..., lattice) -> (simple_loss, pruned_loss); .full_loss(...); .encode(...)
        .set_batch_count(count): the model's own schedules (the Zipformer's), once per training step
        .ctc_log_probs(encoder_out) with the model config's ctc_head: true
    ctc.ctc_loss(...), ctc.consistency_loss(...)    CTC and CR-CTC losses on CtcHead outputs
"""

from asr_recipes.models.build import ModelConfig, build_transducer, count_parameters
from asr_recipes.models.conformer import Conformer
from asr_recipes.models.ctc import CtcHead
from asr_recipes.models.decoder import StatelessDecoder
from asr_recipes.models.encoder import Encoder
from asr_recipes.models.joiner import Joiner
from asr_recipes.models.lattice import LatticeConfig
from asr_recipes.models.transducer import Transducer

__all__ = [
    "Conformer",
    "CtcHead",
    "Encoder",
    "Joiner",
    "LatticeConfig",
    "ModelConfig",
    "StatelessDecoder",
    "Transducer",
    "build_transducer",
    "count_parameters",
]
