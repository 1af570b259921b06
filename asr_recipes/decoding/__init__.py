"""Decoding: search strategies over encoder output, and the decode / transcribe / results
stages built on them (checkpoints and their averages: asr_recipes.checkpoint).

Search (whisper ``decoding.py`` style: an options dataclass and one class per method):
    DecodingOptions(method, beam=4, max_sym_per_frame=1, max_sym_per_utt=None, blank_penalty=0.0,
                    hotwords=(), nbest=1, lm=None, lm_scale=0.0, lodr_bigram=None, lodr_scale=0.0,
                    lm_rescore=False)
    decode(model, encoder_out (N, T', D), encoder_lens (N,), options) -> list[DecodingResult]
    search_methods() -> ("greedy_search", "beam_search", "modified_beam_search", "ctc_greedy_search",
                         "ctc_prefix_beam_search")   (the ctc_* ones read the model's CTC head)
    DecodingResult.tokens (best token ids), .score, .timestamps (encoder frames), .hyps (best first)

Around it, one module per job:
    ctc_search   CTC greedy and prefix beam searches over the CTC head
    context_graph  hotword automaton (Aho-Corasick) that modified beam search carries per hypothesis
    hotwords     hotwords files -> DecodingOptions.hotwords
    lm_fusion    RNN-LM shallow fusion, LODR and n-best rescoring for modified beam search
    word_times   encoder frames -> token and word times in seconds
    streaming    many streams decoded chunk by chunk (StreamingRecognizer)
    runner       decoding test sets: scoring files, %WER and speed reports (bin.decode)
    transcribe   audio files -> features as in training -> text (bin.transcribe)
    report       the run's results table, <exp_dir>/RESULTS.md (bin.results)
"""

from asr_recipes.decoding.beam import BeamSearch
from asr_recipes.decoding.ctc_search import CtcGreedySearch, CtcPrefixBeamSearch
from asr_recipes.decoding.greedy import GreedySearch
from asr_recipes.decoding.modified_beam import ModifiedBeamSearch
from asr_recipes.decoding.options import DecodingOptions, DecodingResult, Hypothesis
from asr_recipes.decoding.search import SearchStrategy, decode, get_search, make_search, search_methods

__all__ = [
    "BeamSearch", "CtcGreedySearch", "CtcPrefixBeamSearch", "DecodingOptions", "DecodingResult", "GreedySearch", "Hypothesis", "ModifiedBeamSearch",
    "SearchStrategy", "decode", "get_search", "make_search", "search_methods",
]
