"""Physical and structural constants shared by data, models, decoding and export.

Everything with a unit lives here, once. Derived quantities (vocabulary size,
feature dimension seen by the model) are computed from data, not configured.
"""

#: Audio sample rate (Hz) that every corpus is resampled to.
SAMPLE_RATE = 16000

#: Log-mel filterbank: number of mel bins per frame.
NUM_MEL_BINS = 80

#: Feature frame shift and window length (seconds): 100 frames per second.
FRAME_SHIFT = 0.010
FRAME_LENGTH = 0.025

#: The Conv2d front end reduces the frame rate by this factor (40 ms per encoder frame).
SUBSAMPLING_FACTOR = 4

#: Feature frames the front end reads past an encoder frame's own 4-frame hop: encoder frame
#: t' is computed from feature frames 4t' .. 4t'+6, so it needs 3 frames (30 ms) of the next
#: hop. This is the only look-ahead of a streaming (causal) encoder besides its chunk.
SUBSAMPLING_LOOKAHEAD = 3

#: Token id of the transducer blank, also used as the decoder's start-of-sequence context.
BLANK_ID = 0

#: Token id of <unk> in every tokenizer; searches never emit it (it acts as a second blank).
UNK_ID = 1


def frames_after_subsampling(num_frames: int) -> int:
    """Encoder frames T' produced from T feature frames by the x4 Conv2d front end.

    Two stride-2 3x3 convolutions without padding: T' = ((T - 1) // 2 - 1) // 2.
    Works on ints and on integer tensors alike.
    """
    return ((num_frames - 1) // 2 - 1) // 2
