"""Greedy transducer decoding of exported graphs with onnxruntime and numpy only (no torch).

The reference for anyone who embeds encoder.onnx / decoder.onnx / joiner.onnx elsewhere:
features from kaldi-native-fbank with sherpa-onnx's settings, then sherpa-onnx's greedy
search (at most one symbol per encoder frame; blank and <unk> end the frame):

    decoder = OnnxGreedyDecoder("exp/onnx")                   # or int8=True for the int8 copies
    text = decoder.transcribe(samples)                        # float32 mono 16 kHz in [-1, 1]
    python -m asr_recipes.export.onnx_greedy exp/onnx a.wav b.wav

A streaming export (metadata "T" in encoder.onnx; the Conformer's or the Zipformer's layout)
is decoded the way sherpa-onnx's OnlineRecognizer does it: zero states of the shapes the
metadata gives, windows of T feature frames every decode_chunk_len frames, the states carried,
and only full windows (the "full" policy of asr_recipes/chunk_windows.py, the
chunk loop PyTorch's StreamingRecognizer runs too; so ``transcribe`` appends tail padding first).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from asr_recipes.chunk_windows import FULL, ChunkWindows
from asr_recipes.export import contract


def read_tokens(path: str | Path) -> list[str]:
    """tokens.txt -> symbols by id."""
    table = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            symbol, idx = line.rsplit(maxsplit=1)
            table[int(idx)] = symbol
    return [table[i] for i in range(len(table))]


def fbank(samples: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """(S,) float32 samples in [-1, 1] -> (T, 80) float32 log-mel fbank, as sherpa-onnx computes it."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    f = contract.SHERPA_FBANK_OPTIONS
    opts.frame_opts.samp_freq = sample_rate
    opts.frame_opts.dither = f["dither"]
    opts.frame_opts.snip_edges = f["snip_edges"]
    opts.frame_opts.window_type = f["window_type"]
    opts.frame_opts.preemph_coeff = f["preemph_coeff"]
    opts.frame_opts.remove_dc_offset = f["remove_dc_offset"]
    opts.mel_opts.num_bins = contract.SHERPA_FEATURES["num_mel_bins"]
    opts.mel_opts.low_freq = f["low_freq"]
    opts.mel_opts.high_freq = f["high_freq"]
    extractor = knf.OnlineFbank(opts)
    extractor.accept_waveform(sample_rate, np.asarray(samples, dtype=np.float32).tolist())
    extractor.input_finished()
    frames = [extractor.get_frame(i) for i in range(extractor.num_frames_ready)]
    return np.asarray(frames, dtype=np.float32).reshape(-1, contract.SHERPA_FEATURES["num_mel_bins"])


def tail_padding_seconds(window: int, shift: int) -> float:
    """Seconds of zeros a streaming client appends so that sherpa's last full window covers
    every real frame: one window plus one shift of 10 ms frames (at least sherpa's examples' 0.66 s)."""
    return max(0.66, (window + shift) * 0.01)


def with_tail_padding(samples: np.ndarray, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """(S,) samples followed by ``seconds`` of zeros (none for seconds = 0)."""
    samples = np.asarray(samples, dtype=np.float32)
    return np.concatenate([samples, np.zeros(int(seconds * sample_rate), np.float32)]) if seconds else samples


class OnnxGreedyDecoder:
    """Greedy search over the graphs in ``model_dir`` (contract's layout)."""

    def __init__(self, model_dir: str | Path, int8: bool = False, num_threads: int = 1):
        import onnxruntime as ort

        model_dir = Path(model_dir)
        names = [contract.INT8[n] if int8 else n for n in (contract.ENCODER, contract.DECODER, contract.JOINER)]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.encoder, self.decoder, self.joiner = (
            ort.InferenceSession(str(model_dir / n), sess_options=opts, providers=["CPUExecutionProvider"])
            for n in names)
        self.symbols = read_tokens(model_dir / contract.TOKENS)
        self.unk_id = self.symbols.index("<unk>") if "<unk>" in self.symbols else None
        dec_meta = self.decoder.get_modelmeta().custom_metadata_map
        self.context_size = int(dec_meta["context_size"])
        enc_meta = self.encoder.get_modelmeta().custom_metadata_map
        self.streaming = "T" in enc_meta
        if self.streaming:
            self.window, self.shift = int(enc_meta["T"]), int(enc_meta["decode_chunk_len"])
            self.windows = ChunkWindows(self.window, self.shift, last=FULL)
            self.state_names = [i.name for i in self.encoder.get_inputs()][1:]
            if enc_meta["model_type"] == contract.MODEL_TYPES["zipformer"]:  # states as sherpa-onnx builds them
                self.state_shapes = contract.zipformer_state_shapes(enc_meta)
            else:  # the Conformer's caches; processed_lens is fed, not carried
                layers, left = int(enc_meta["num_encoder_layers"]), int(enc_meta["left_context"])
                dim, kernel = int(enc_meta["encoder_dim"]), int(enc_meta["cnn_module_kernel"])
                self.state_shapes = [(layers, left, 1, dim), (layers, kernel - 1, 1, dim)]

    # ------------------------------------------------------------------ encoder
    def encode(self, features: np.ndarray) -> np.ndarray:
        """(T, 80) features -> (T', J) projected encoder frames of one utterance."""
        if self.streaming:
            return self._encode_streaming(features)
        out, lens = self.encoder.run(None, {"x": features[None], "x_lens": np.array([len(features)], np.int64)})
        return out[0, : int(lens[0])]

    def _encode_streaming(self, features: np.ndarray) -> np.ndarray:
        """Zero states, then per window: encoder_out and the new states (outputs 1..), carried.
        The Conformer's layout also takes the feature frames before the window (processed_lens)."""
        states = [np.zeros(shape, np.int64 if name == contract.PROCESSED_LENS else np.float32)
                  for name, shape in zip(self.state_names, self.state_shapes)]
        chunks = []
        for processed, _ in self.windows.windows(len(features)):  # full windows only, as sherpa decodes
            feed = {"x": features[None, processed : processed + self.window], **dict(zip(self.state_names, states))}
            if len(self.state_names) > len(states):
                feed[contract.PROCESSED_LENS] = np.array([processed], np.int64)
            out, *states = self.encoder.run(None, feed)
            chunks.append(out[0])
        J = self.joiner.get_inputs()[0].shape[1]
        return np.concatenate(chunks) if chunks else np.zeros((0, J), np.float32)

    # ------------------------------------------------------------------ search
    def search(self, encoder_out: np.ndarray) -> tuple[list[int], list[int]]:
        """(T', J) -> (token ids, encoder frame of each): one symbol per frame at most."""
        context = [contract.START_CONTEXT] * (self.context_size - 1) + [contract.BLANK_ID]
        decoder_out = self._decoder(context)
        tokens, frames = [], []
        for t in range(len(encoder_out)):
            (logit,) = self.joiner.run(None, {"encoder_out": encoder_out[t : t + 1], "decoder_out": decoder_out})
            y = int(np.argmax(logit[0]))
            if y != contract.BLANK_ID and y != self.unk_id:
                tokens.append(y)
                frames.append(t)
                context = context[1:] + [y]
                decoder_out = self._decoder(context)
        return tokens, frames

    def _decoder(self, context: list[int]) -> np.ndarray:
        (out,) = self.decoder.run(None, {"y": np.array([context], dtype=np.int64)})
        return out  # (1, J)

    # ------------------------------------------------------------------ text
    def text(self, tokens: Sequence[int]) -> str:
        """Symbols joined, "\u2581" as a space (sherpa-onnx's rendering), outer spaces stripped."""
        return "".join(self.symbols[i] for i in tokens).replace("\u2581", " ").strip()

    def decode_features(self, features: np.ndarray) -> list[int]:
        return self.search(self.encode(np.asarray(features, dtype=np.float32)))[0]

    def transcribe(self, samples: np.ndarray, sample_rate: int = 16000) -> str:
        """Float32 mono samples in [-1, 1] at 16 kHz -> text."""
        if sample_rate != contract.SHERPA_FEATURES["sample_rate"]:
            raise ValueError(f"audio at {sample_rate} Hz: resample to 16000 Hz first")
        samples = np.asarray(samples, dtype=np.float32)
        if self.streaming:
            samples = with_tail_padding(samples, tail_padding_seconds(self.window, self.shift), sample_rate)
        return self.text(self.decode_features(fbank(samples, sample_rate)))


def main(argv: list[str] | None = None) -> int:
    import soundfile

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m asr_recipes.export.onnx_greedy MODEL_DIR AUDIO [AUDIO ...]", file=sys.stderr)
        return 2
    decoder = OnnxGreedyDecoder(args[0])
    for path in args[1:]:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        print(f"{path}\t{decoder.transcribe(samples.mean(axis=1), rate)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
