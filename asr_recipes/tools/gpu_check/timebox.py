"""Run one command with a time limit, its output teed to a log file, and stop all of it on time.

The GPU check's parts are separate processes (pytest, the loss benchmark, torchrun and its
workers, the decoding benchmark): a part that hangs or overruns is killed with its whole
process group, and what it printed so far is kept for the report.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence


@dataclass(frozen=True)
class Finished:
    """How a command ended. ``returncode`` is None when it was killed at its time limit."""

    command: tuple[str, ...]
    returncode: Optional[int]
    seconds: float  # wall time
    output: str  # stdout and stderr, interleaved as printed

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def status(self) -> str:
        """"ok", "timed out after N s" or "failed (exit N)"."""
        if self.timed_out:
            return f"timed out after {self.seconds:.0f} s"
        return "ok" if self.ok else f"failed (exit {self.returncode})"

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.rstrip("\n").splitlines()[-lines:])


def run_timed(command: Sequence[str], timeout_s: float, log_path: Path, cwd: Optional[Path] = None,
              env: Optional[Mapping[str, str]] = None, echo: bool = True) -> Finished:
    """Runs ``command`` for at most ``timeout_s`` seconds.

    Output (stdout and stderr merged) is appended to ``log_path`` line by line as it comes,
    echoed to our stdout if ``echo``, and returned. At the limit the command's process group
    gets SIGTERM, then SIGKILL 10 s later.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    lines: list[str] = []
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(list(command), cwd=cwd, env=None if env is None else dict(env),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)

        def pump() -> None:
            for line in proc.stdout:
                lines.append(line)
                log.write(line)
                log.flush()
                if echo:
                    print(line, end="", flush=True)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_group(proc)
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C): leave nothing running
                _stop_group(proc)
        reader.join(timeout=10)
        seconds = time.monotonic() - started
        if timed_out:
            log.write(f"[timed out after {seconds:.0f} s: process group stopped]\n")
    return Finished(tuple(command), None if timed_out else proc.returncode, seconds, "".join(lines))


def _stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to the whole group, SIGKILL to whatever of it is left after ``grace_s``."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:  # the leader may be gone while children that ignored SIGTERM still hold the pipe
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
