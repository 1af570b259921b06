"""The machine a measurement ran on, named the same way by every benchmark and results table."""

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name ("Intel(R) Xeon(R) Processor", from /proc/cpuinfo on Linux),
    else what the platform module knows ("x86_64 CPU")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} CPU"
