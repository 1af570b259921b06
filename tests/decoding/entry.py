"""Run a Hydra entry point in this process (Hydra's main cannot be called as a function)."""

import runpy
import sys


def run_entry(module: str, *overrides: str) -> None:
    """``python -m <module> <overrides...>``; raises AssertionError if it exits non-zero."""
    saved = sys.argv
    sys.argv = [module, *overrides]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        assert e.code in (0, None), f"{module} {' '.join(overrides)} exited with {e.code}"
    finally:
        sys.argv = saved
