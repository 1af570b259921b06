"""Checkpoint -> a directory sherpa-onnx loads, checked before it replaces anything.

    plan = plan_export(ckpt, source)                  # refuse what sherpa cannot run
    report = export_checkpoint(ckpt, "exp/onnx", source="exp/averaged-epoch-30-avg-9.pt", int8=True)

The layout follows the checkpoint: the encoder family (Conformer or Zipformer: sherpa-onnx's
model_type "conformer" or "zipformer2"), offline or streaming (causal models stream by
default), and, for a model with a CTC head, a CTC graph ctc.onnx beside the transducer files
(contract.py). Everything is written into a temporary directory beside ``out_dir``; the graphs
are checked there (verify.py against the PyTorch model; int8 copies loosely against fp32; and,
when sherpa-onnx is installed, loaded and run by sherpa-onnx itself in a child process, since
it exits the process on a bad model). Only then does the directory replace ``out_dir``
(two renames), so ``out_dir`` holds either its old complete export or the new one, never
a mix. An ``out_dir`` holding files other than an export's is refused, not replaced.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from asr_recipes.export import contract, graphs, verify
from asr_recipes.export.compat import ExportError, ExportPlan, load_model, plan_export

log = logging.getLogger(__name__)

#: the only names an export directory holds; anything else there is not ours to replace
EXPORT_FILES = frozenset({contract.ENCODER, contract.DECODER, contract.JOINER, contract.TOKENS,
                          contract.EXPORT_INFO, *contract.INT8.values(), contract.CTC, contract.CTC_INT8})


@dataclass
class ExportReport:
    out_dir: str
    source: str
    streaming: bool
    chunk_size: Optional[int]
    left_context: Optional[int]
    int8: bool
    #: the encoder family ("conformer" | "zipformer") and the encoder's sherpa-onnx model_type
    encoder: str = "conformer"
    model_type: str = contract.MODEL_TYPE
    #: whether ctc.onnx (the CTC head) was exported
    ctc: bool = False
    #: max relative deviation of each graph output from PyTorch (verify.py)
    max_relative_error: dict[str, float] = field(default_factory=dict)
    #: relative deviation of each int8 graph from its fp32 graph
    int8_relative_error: dict[str, float] = field(default_factory=dict)
    #: True: sherpa-onnx loaded and ran the files; None: sherpa-onnx not installed
    sherpa_checked: Optional[bool] = None
    file_bytes: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    decoding: dict[str, Any] = field(default_factory=dict)


def export_checkpoint(ckpt: dict[str, Any], out_dir: str | os.PathLike, source: str = "checkpoint",
                      int8: bool = False, streaming: Optional[bool] = None, chunk_size: Optional[int] = None,
                      left_context: Optional[int] = None, sherpa_check: bool = True) -> ExportReport:
    """Export ``ckpt`` to ``out_dir`` (see the module docstring); ExportError on any failure."""
    out_dir = Path(out_dir)
    plan = plan_export(ckpt, source, streaming, chunk_size, left_context)
    for w in plan.warnings:
        log.warning("%s", w)
    _check_out_dir(out_dir)
    model, tokenizer = load_model(ckpt, source, plan)
    report = ExportReport(str(out_dir), source, plan.streaming, plan.chunk_size, plan.left_context, int8,
                          plan.encoder, contract.MODEL_TYPES[plan.encoder], plan.ctc, warnings=list(plan.warnings),
                          decoding=dict(ckpt.get("decoding") or {}))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        _write(model, tokenizer, plan, tmp, source, report)
        if int8:
            graphs.quantize_int8(tmp)
            report.int8_relative_error = verify.check_int8(tmp)
        if sherpa_check:
            report.sherpa_checked = sherpa_runs(tmp, plan.streaming, int8, plan.ctc)
        report.file_bytes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        (tmp / contract.EXPORT_INFO).write_text(json.dumps(asdict(report), indent=1) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        _replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _write(model, tokenizer, plan: ExportPlan, tmp: Path, source: str, report: ExportReport) -> None:
    comment = f"asr-recipes export of {Path(source).name}"
    log.info("exporting %s graphs of %s", "streaming" if plan.streaming else "offline", source)
    if plan.streaming:
        graphs.export_streaming_encoder(model, tmp / contract.ENCODER, plan.chunk_size, plan.left_context, comment)
        errors = verify.verify_streaming_encoder(model, tmp / contract.ENCODER, plan.chunk_size, plan.left_context)
    else:
        graphs.export_offline_encoder(model, tmp / contract.ENCODER, comment)
        errors = verify.verify_offline_encoder(model, tmp / contract.ENCODER)
    if plan.ctc and plan.streaming:
        log.info("exporting the streaming CTC graph")
        graphs.export_streaming_encoder(model, tmp / contract.CTC, plan.chunk_size, plan.left_context, comment, "ctc")
        errors.update(verify.verify_streaming_encoder(model, tmp / contract.CTC, plan.chunk_size, plan.left_context,
                                                      head="ctc"))
    elif plan.ctc:
        log.info("exporting the offline CTC graph")
        graphs.export_offline_ctc(model, tmp / contract.CTC, comment)
        errors.update(verify.verify_offline_encoder(model, tmp / contract.CTC, head="ctc"))
    graphs.export_decoder(model, tmp / contract.DECODER, comment)
    graphs.export_joiner(model, tmp / contract.JOINER, comment)
    errors.update(verify.verify_decoder_joiner(model, tmp / contract.DECODER, tmp / contract.JOINER))
    report.max_relative_error = errors
    shown = {k: v for k, v in errors.items() if not k.startswith("new_")}
    states = [v for k, v in errors.items() if k.startswith("new_")]
    if states:  # a Zipformer has 6 per layer
        shown["new states"] = max(states)
    log.info("graphs match PyTorch (max relative error %s)", ", ".join(f"{k} {v:.2g}" for k, v in shown.items()))
    lines = "".join(f"{symbol} {i}\n" for i, symbol in enumerate(tokenizer.tokens))
    (tmp / contract.TOKENS).write_text(lines, encoding="utf-8")


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"out_dir {out_dir} is a file; choose a directory")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in EXPORT_FILES)
        if foreign:
            raise ExportError(f"out_dir {out_dir} holds files that are not an export's ({', '.join(foreign[:5])}); "
                              "an export replaces its directory as a whole: choose a new or empty directory")


def _replace(tmp: Path, out_dir: Path) -> None:
    """Put the finished tmp directory at out_dir, moving an older export out of the way first."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
    os.replace(out_dir, old / "export")
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(old / "export", out_dir)  # put the old export back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


_SHERPA_PROBE = r"""
import sys, numpy as np, sherpa_onnx
d, streaming, suffix, graph = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4]
samples = (0.01 * np.random.default_rng(0).standard_normal(48000)).astype(np.float32)
tokens = f"{d}/tokens.txt"
if graph == "ctc" and streaming:
    r = sherpa_onnx.OnlineRecognizer.from_zipformer2_ctc(tokens=tokens, model=f"{d}/ctc{suffix}.onnx", num_threads=1)
elif graph == "ctc":
    r = sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(model=f"{d}/ctc{suffix}.onnx", tokens=tokens, num_threads=1)
else:
    files = dict(encoder=f"{d}/encoder{suffix}.onnx", decoder=f"{d}/decoder{suffix}.onnx",
                 joiner=f"{d}/joiner{suffix}.onnx", tokens=tokens, num_threads=1)
    recognizer = sherpa_onnx.OnlineRecognizer if streaming else sherpa_onnx.OfflineRecognizer
    r = recognizer.from_transducer(**files)
if streaming:
    s = r.create_stream(); s.accept_waveform(16000, samples); s.input_finished()
    while r.is_ready(s):
        r.decode_stream(s)
    r.get_result(s)
else:
    s = r.create_stream(); s.accept_waveform(16000, samples); r.decode_stream(s)
print("ok")
"""


def sherpa_runs(model_dir: Path, streaming: bool, int8: bool, ctc: bool = False) -> Optional[bool]:
    """Load the files with sherpa-onnx and decode 3 s of noise, in a child process (sherpa-onnx
    exits its process on a model it cannot use): the transducer, and the CTC graph if ``ctc``,
    fp32 and (``int8``) int8. None if sherpa-onnx is not installed."""
    try:
        import sherpa_onnx  # noqa: F401
    except ImportError:
        log.warning("sherpa-onnx is not installed (pip install -e '.[export]'): the files were checked with "
                    "onnxruntime only, not loaded by sherpa-onnx")
        return None
    for graph in ("transducer", "ctc") if ctc else ("transducer",):
        for suffix in ("", ".int8") if int8 else ("",):
            proc = subprocess.run([sys.executable, "-c", _SHERPA_PROBE, str(model_dir), "1" if streaming else "0",
                                   suffix, graph], capture_output=True, text=True, timeout=600)
            if proc.returncode != 0 or proc.stdout.strip() != "ok":
                detail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])[:500]
                raise ExportError(f"sherpa-onnx could not run the exported {graph}{suffix} files ({detail}); please "
                                  "report this as a bug")
    return True
