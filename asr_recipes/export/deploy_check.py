"""A test set through PyTorch, our onnxruntime decoder and sherpa-onnx, fp32 and int8: the
deployment table (WER, share of transcripts identical to PyTorch's, real-time factor, size).

    rows = deploy_check(ckpt, "exp/onnx", "data/fbank/librispeech_cuts_test-clean.jsonl.gz")
    print(format_table(rows))

Every decoder gets the cut's audio (16 kHz float32) and computes its own features, as in
deployment: PyTorch with the project's fbank (transcribe's path), the others with
kaldi-native-fbank. The reference is PyTorch's greedy search with one symbol per frame (what
sherpa-onnx's searches can do); for a streaming export, PyTorch decodes with a
StreamingRecognizer over the windows sherpa-onnx decodes (full windows only, chunk_windows.py's
"full" policy). Every streaming decoder appends the same tail padding to the audio, once
(onnx_greedy.with_tail_padding), as a sherpa-onnx client does. RTF = compute seconds / audio
seconds, one thread each, utterances one at a time, feature extraction included; measured
both as wall-clock time and as the process's CPU time (which a busy shared machine inflates
far less: with one thread it is what the wall-clock RTF on an idle core would be).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from asr_recipes.chunk_windows import FULL
from asr_recipes.data.features import fbank_extractor
from asr_recipes.decoding import DecodingOptions, make_search
from asr_recipes.decoding.streaming import StreamingRecognizer, decode_streaming
from asr_recipes.export import contract
from asr_recipes.export.compat import load_model
from asr_recipes.export.onnx_greedy import OnnxGreedyDecoder, tail_padding_seconds, with_tail_padding
from asr_recipes.machine import cpu_name
from asr_recipes.models.build import count_parameters
from asr_recipes.scoring import score


@dataclass(frozen=True)
class Utterance:
    id: str
    samples: np.ndarray  # (S,) float32 at 16 kHz
    seconds: float
    ref: str


@dataclass(frozen=True)
class Row:
    decoder: str
    precision: str
    error_rate: float
    identical: float  # % of utterances whose transcript equals PyTorch greedy's
    rtf: float  # wall clock
    rtf_cpu: float  # process CPU time
    megabytes: float
    hyps: tuple[str, ...] = ()


def load_utterances(cuts_path: str | os.PathLike, limit: Optional[int] = None) -> list[Utterance]:
    """Cuts (with recordings and supervisions) -> utterances with audio resampled to 16 kHz."""
    from lhotse import load_manifest

    out = []
    for cut in load_manifest(cuts_path):
        if limit is not None and len(out) >= limit:
            break
        if cut.sampling_rate != contract.SHERPA_FEATURES["sample_rate"]:
            cut = cut.resample(contract.SHERPA_FEATURES["sample_rate"])
        audio = cut.load_audio()  # (C, S)
        samples = audio.mean(axis=0).astype(np.float32)
        ref = " ".join(s.text for s in cut.supervisions if s.text)
        out.append(Utterance(cut.id, samples, samples.size / 16000, ref))
    if not out:
        raise ValueError(f"{cuts_path} holds no cuts")
    return out


def _timed(utts: list[Utterance], transcribe: Callable[[np.ndarray], str]) -> tuple[list[str], float, float]:
    """Transcripts, wall-clock seconds and CPU seconds of transcribing ``utts`` one by one."""
    hyps, wall, cpu = [], 0.0, 0.0
    for u in utts:
        start, start_cpu = time.perf_counter(), time.process_time()
        hyps.append(transcribe(u.samples))
        wall += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
    return hyps, wall, cpu


class _PyTorchGreedy:
    """Greedy search, one symbol per frame: offline, or streaming (chunk = (chunk_size,
    left_context)) over the windows sherpa-onnx decodes, after ``tail`` seconds of padding."""

    def __init__(self, model, tokenizer, chunk: Optional[tuple[int, int]], tail: float = 0.0):
        self.model, self.tokenizer, self.tail = model, tokenizer, tail
        self.search = make_search(model, DecodingOptions("greedy_search", max_sym_per_frame=1))
        self.recognizer = None if chunk is None else StreamingRecognizer(model, self.search, *chunk, last=FULL)

    @torch.inference_mode()
    def __call__(self, samples: np.ndarray) -> str:
        if self.recognizer is not None:
            samples = with_tail_padding(samples, self.tail)
        feats = torch.from_numpy(fbank_extractor().extract(samples[None], 16000))  # (T, 80)
        lens = torch.tensor([feats.size(0)])  # (1,)
        if self.recognizer is None:
            streams = self.search.start(1)
            self.search.advance(streams, *self.model.encode(feats[None], lens))
            result = self.search.results(streams)[0]
        else:
            result = decode_streaming(self.recognizer, feats[None], lens)[0]
        return self.tokenizer.decode([result.tokens])[0]


def _sherpa(export_dir: Path, streaming: bool, method: str, suffix: str, beam: int, num_threads: int,
            tail: float = 0.0):
    import sherpa_onnx

    files = dict(encoder=str(export_dir / f"encoder{suffix}.onnx"), decoder=str(export_dir / f"decoder{suffix}.onnx"),
                 joiner=str(export_dir / f"joiner{suffix}.onnx"), tokens=str(export_dir / contract.TOKENS))
    if streaming:
        recognizer = sherpa_onnx.OnlineRecognizer.from_transducer(**files, num_threads=num_threads,
                                                                  decoding_method=method, max_active_paths=beam)

        def transcribe(samples):
            s = recognizer.create_stream()
            s.accept_waveform(16000, with_tail_padding(samples, tail))
            s.input_finished()
            while recognizer.is_ready(s):
                recognizer.decode_stream(s)
            return recognizer.get_result(s)
    else:
        recognizer = sherpa_onnx.OfflineRecognizer.from_transducer(**files, num_threads=num_threads,
                                                                   decoding_method=method, max_active_paths=beam)

        def transcribe(samples):
            s = recognizer.create_stream()
            s.accept_waveform(16000, samples)
            recognizer.decode_stream(s)
            return s.result.text
    return transcribe


def _megabytes(export_dir: Path, suffix: str) -> float:
    return sum((export_dir / f"{n}{suffix}.onnx").stat().st_size for n in ("encoder", "decoder", "joiner")) / 1e6


def deploy_check(ckpt: dict[str, Any], export_dir: str | os.PathLike, cuts_path: str | os.PathLike,
                 source: str = "checkpoint", limit: Optional[int] = None, unit: str = "word", beam: int = 4,
                 num_threads: int = 1) -> tuple[list[Row], dict]:
    """The table's rows and a description of the run (see the module docstring)."""
    import onnx

    export_dir = Path(export_dir)
    meta = {p.key: p.value for p in onnx.load(str(export_dir / contract.ENCODER), load_external_data=False)
            .metadata_props}
    streaming = "T" in meta
    model, tokenizer = load_model(ckpt, source)
    chunk = None
    tail = 0.0
    if streaming:
        chunk_size = int(meta["decode_chunk_len"]) // 4
        chunk = (chunk_size, int(meta["left_context"]))
        tail = tail_padding_seconds(int(meta["T"]), int(meta["decode_chunk_len"]))
    utts = load_utterances(cuts_path, limit)
    audio = sum(u.seconds for u in utts)
    torch.set_num_threads(num_threads)
    refs = [u.ref.split() for u in utts]

    def row(name: str, precision: str, transcribe, megabytes: float, reference=None) -> Row:
        hyps, wall, cpu = _timed(utts, transcribe)
        stats = score([(u.id, r, h.split()) for u, r, h in zip(utts, refs, hyps)], unit)
        same = 100.0 if reference is None else 100.0 * np.mean([h.split() == p.split() for h, p in zip(hyps, reference)])
        return Row(name, precision, stats.error_rate, float(same), wall / audio, cpu / audio, megabytes, tuple(hyps))

    rows = [row("PyTorch greedy" + (" (chunked)" if streaming else ""), "fp32",
                _PyTorchGreedy(model, tokenizer, chunk, tail), count_parameters(model) * 4 / 1e6)]
    reference = rows[0].hyps
    int8 = all((export_dir / n).is_file() for n in contract.INT8.values())
    for precision, suffix in (("fp32", ""), ("int8", ".int8")) if int8 else (("fp32", ""),):
        size = _megabytes(export_dir, suffix)
        ours = OnnxGreedyDecoder(export_dir, int8=bool(suffix), num_threads=num_threads)
        rows.append(row("onnxruntime greedy (ours)", precision, ours.transcribe, size, reference))
        for method in ("greedy_search", "modified_beam_search"):
            name = "sherpa-onnx " + ("greedy" if method == "greedy_search" else f"modified beam {beam}")
            rows.append(row(name, precision, _sherpa(export_dir, streaming, method, suffix, beam, num_threads, tail),
                            size, reference))
    info = {"utterances": len(utts), "audio_seconds": round(audio, 1), "streaming": streaming, "unit": unit,
            "chunk": chunk, "tail_padding_seconds": tail, "threads": num_threads,
            "cpu": cpu_name(), "torch": torch.__version__}
    return rows, info


def format_table(rows: list[Row], unit: str = "word") -> str:
    label = "WER" if unit == "word" else "CER"
    lines = [f"| decoder | weights | {label} % | identical to PyTorch % | RTF (CPU time) | RTF (wall) | model MB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.decoder} | {r.precision} | {r.error_rate:.2f} | {r.identical:.1f} | {r.rtf_cpu:.4f} | "
                     f"{r.rtf:.4f} | {r.megabytes:.1f} |")
    return "\n".join(lines)
