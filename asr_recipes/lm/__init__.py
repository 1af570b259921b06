"""Token-level language models for shallow fusion, LODR and rescoring in the searches.

    model       RnnLm (icefall's RNN-LM design: embedding, LSTM, tied output layer) over the
                transducer's token ids, sos = eos = the blank id; sentence log-probabilities
    bigram      TokenBigram: a back-off token bigram counted from transcripts (LODR's
                estimate of the transducer's internal LM), saved as JSON

Around them, each in its layer: LM checkpoints in asr_recipes.checkpoint.lm, text preparation
(and the bigram's counting from transcripts) in asr_recipes.training.lm_text, training in
asr_recipes.training.lm_trainer, fusion in asr_recipes.decoding.lm_fusion, export for
sherpa-onnx in asr_recipes.export.lm_onnx and asr_recipes.export.lodr_fst.
"""
