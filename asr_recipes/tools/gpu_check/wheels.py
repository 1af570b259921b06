"""Wheels of the Python packages a GPU machine's Python may lack, fetched beforehand (the GPU
machine needs no network).

A CUDA image's Python typically has torch, torchaudio, triton, numpy, sentencepiece,
tensorboard, pytest, ... but not lhotse, hydra and a few of their needs (PACKAGES).
``download_wheels`` saves one wheel per package, at the version installed in this environment
(the one the tests passed with), for the target interpreter (conf/gpu_prepare.yaml's
python_version) and platform (PLATFORMS). A package published only as a source archive
(antlr4-python3-runtime, pure Python) is built into a wheel here. local/gpu_check.sh installs
them there with ``pip install --no-index --no-deps --target``.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

#: What import asr_recipes (data, training, decoding, scoring) needs beyond the GPU image.
PACKAGES = ("lhotse", "lilcom", "hydra-core", "omegaconf", "antlr4-python3-runtime", "kaldialign", "soundfile",
            "cffi", "pycparser", "audioread", "cytoolz", "intervaltree")
#: Oldest first is not needed: pip takes any tag in the list. These are glibc 2.17 .. 2.28 builds.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_name_matches(filename: str, package: str) -> bool:
    """Is ``filename`` a wheel of ``package`` (names compared as pip normalises them)?"""
    return filename.endswith(".whl") and _normalise(filename.split("-", 1)[0]) == _normalise(package)


def pinned(packages: Sequence[str]) -> list[str]:
    """``name==version`` for each package as installed here; a clear error for one that is not."""
    out = []
    for name in packages:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise RuntimeError(f"{name} is not installed in {sys.prefix}: run `make install` first") from None
    return out


def _pip(args: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def download_wheels(dest: Path, packages: Sequence[str] = PACKAGES, python_version: str = "3.12") -> list[Path]:
    """One wheel per package into ``dest`` (kept if already there, other versions removed)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    saved = []
    for requirement in pinned(packages):
        name, version = requirement.split("==")
        existing = [p for p in dest.iterdir() if wheel_name_matches(p.name, name)]
        keep = [p for p in existing if p.name.split("-")[1] == version]
        for stale in set(existing) - set(keep):
            stale.unlink()
        if keep:
            saved.append(keep[0])
            continue
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        got = _pip(["download", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
                    "--implementation", "cp", *platforms, "-d", str(dest), requirement])
        if got.returncode != 0:
            # No binary wheel: a pure-Python source archive can be built into a py3-none-any wheel.
            got = _pip(["wheel", "--no-deps", "-w", str(dest), requirement])
            if got.returncode != 0:
                raise RuntimeError(f"could not fetch a wheel of {requirement}: {got.stderr[-1500:]}")
        wheel = [p for p in dest.iterdir() if wheel_name_matches(p.name, name) and p.name.split("-")[1] == version]
        if len(wheel) != 1:
            raise RuntimeError(f"expected one wheel of {requirement} in {dest}, found {[p.name for p in wheel]}")
        tags = wheel[0].name[:-len(".whl")].split("-")[-3:]
        if tags[1] not in ("none", "abi3") and not tags[0].startswith(f"cp{python_version.replace('.', '')}"):
            wheel[0].unlink()
            raise RuntimeError(f"{wheel[0].name} was built for this machine, not for CPython {python_version}: "
                               "it needs a compiler there; find a binary wheel or drop the package")
        log.info("wheel %s", wheel[0].name)
        saved.append(wheel[0])
    return saved
