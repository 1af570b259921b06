"""asr-recipes: pruned RNN-T transducer training recipes."""

__version__ = "0.1.0"
