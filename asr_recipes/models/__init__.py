"""Conformer transducer: subsampling, conformer, decoder (stateless), joiner, transducer.

Public API:
    build_transducer(model_cfg, vocab_size, feature_dim=80) -> Transducer
    ModelConfig.from_mapping(cfg) / .to_dict()      the architecture keys of conf/model/*.yaml
    count_parameters(model) -> int
    Transducer.forward(...) -> (simple_loss, pruned_loss); .full_loss(...); .encode(...)
"""

from asr_recipes.models.build import ModelConfig, build_transducer, count_parameters
from asr_recipes.models.conformer import Conformer
from asr_recipes.models.decoder import StatelessDecoder
from asr_recipes.models.joiner import Joiner
from asr_recipes.models.transducer import Transducer

__all__ = [
    "Conformer",
    "Joiner",
    "ModelConfig",
    "StatelessDecoder",
    "Transducer",
    "build_transducer",
    "count_parameters",
]
