"""Synthesized speech for the demo recipe and for generated evaluation sets: scaffolding that
the library's layers (data, models, training, decoding, export) never import.

    voices     espeak-ng and flite speakers, rendering text to 16 kHz audio
    text       seeded sentence grammars (commands, sentences, Mandarin) and their splits
    noise      generated noise and babble (a corpus in the MUSAN layout, noisy test audio)
    corpus     whole corpora in the LibriSpeech / AISHELL layouts (``bin.synthesize``): the
               data stages then prepare them as that corpus (``prepare corpus=librispeech``)
    sets       small generated test sets: speak, trim, write manifests and features
    word_gaps  words with known silences between them, to measure word timestamps
    biasing    a hotword biasing test set (a name no training sentence has)
"""
