"""Which feature-frame windows a streaming encoder reads: the one chunk loop of everything
that streams (StreamingRecognizer, the export checks, the torch-free onnxruntime decoder).

A chunk of ``chunk_size`` encoder frames reads a window of ``window`` feature frames; windows
start every ``shift`` frames (window - shift frames of look-ahead overlap). Window k starts at
k * shift and is decoded once it is ready; what happens at the end of a stream is the policy
``last``:

    "pad"   a window is ready when ``window`` frames have arrived, or, once the input is
            finished, when at least ``min_frames`` (the fewest that give an encoder frame)
            are left: the short last window is decoded padded (StreamingRecognizer), so no
            audio is lost and no tail padding is needed.
    "full"  a window is ready only when MORE than ``window`` frames are there (sherpa-onnx's
            OnlineRecognizer: processed + T < frames ready), finished or not: the last
            partial window is never decoded, which is why sherpa-onnx clients append tail
            padding (export.onnx_greedy.tail_padding_seconds).

No torch here: the onnxruntime decoder uses it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

PAD, FULL = "pad", "full"


@dataclass(frozen=True)
class ChunkWindows:
    window: int
    shift: int
    min_frames: int = 1
    last: str = PAD

    def __post_init__(self):
        if self.last not in (PAD, FULL):
            raise ValueError(f"last must be {PAD!r} (decode the last partial window padded) or {FULL!r} (full "
                             f"windows only, as sherpa-onnx), got {self.last!r}")
        if not 1 <= self.shift <= self.window:
            raise ValueError(f"need 1 <= shift <= window feature frames, got shift {self.shift}, window {self.window}")

    def ready(self, available: int, finished: bool) -> bool:
        """Whether the window starting here can be decoded, with ``available`` feature frames
        from its start on and the input ``finished`` or not."""
        if self.last == FULL:
            return available > self.window
        return available >= self.window or (finished and available >= self.min_frames)

    def windows(self, num_frames: int) -> list[tuple[int, int]]:
        """(start, valid frames) of every window a finished stream of ``num_frames`` frames decodes."""
        out, start = [], 0
        while self.ready(num_frames - start, finished=True):
            out.append((start, min(self.window, num_frames - start)))
            start += self.shift
        return out
