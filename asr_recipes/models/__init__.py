"""Conformer transducer: subsampling, conformer, decoder (stateless), joiner, CTC head, transducer.

Public API:
    build_transducer(model_cfg, vocab_size, feature_dim=80) -> Transducer
    ModelConfig.from_mapping(cfg) / .to_dict()      the architecture keys of conf/model/*.yaml
    count_parameters(model) -> int
    Transducer.forward(...) -> (simple_loss, pruned_loss); .full_loss(...); .encode(...);
        .ctc_log_probs(encoder_out) with model.ctc_head=true
    ctc.ctc_loss(...), ctc.consistency_loss(...)    CTC and CR-CTC losses on CtcHead outputs
"""

from asr_recipes.models.build import ModelConfig, build_transducer, count_parameters
from asr_recipes.models.conformer import Conformer
from asr_recipes.models.ctc import CtcHead
from asr_recipes.models.decoder import StatelessDecoder
from asr_recipes.models.joiner import Joiner
from asr_recipes.models.transducer import Transducer

__all__ = [
    "Conformer",
    "CtcHead",
    "Joiner",
    "ModelConfig",
    "StatelessDecoder",
    "Transducer",
    "build_transducer",
    "count_parameters",
]
