"""The GPU check's markdown report, rewritten in full (atomically) after every change.

A run cut off at any moment (the GPU lease ends, a part hangs) leaves a complete file with
the parts finished so far, and the part that was running marked as such.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Iterable, Optional, Sequence

from asr_recipes.atomic_files import write_atomic


def fmt(value: Optional[float], digits: int = 1, unit: str = "") -> str:
    """A number with thousands separators, or "-" for a value that was not measured."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def shown(command: Sequence[str]) -> str:
    """A command as the report prints it: the interpreter's path shortened to "python"."""
    first = "python" if Path(command[0]).name.startswith("python") else command[0]
    return " ".join([first, *command[1:]])


def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: Optional[str] = None) -> list[str]:
    """Markdown table lines; ``align`` is one character per column, "l" or "r" (default: all "l")."""
    align = align or "l" * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def fenced(text: str, max_lines: int = 40) -> list[str]:
    """The last ``max_lines`` lines of ``text`` as a fenced block."""
    lines = text.rstrip("\n").splitlines()[-max_lines:]
    return ["```", *lines, "```"]


class Report:
    """Title, header lines, then numbered sections in the order they were first put."""

    def __init__(self, path: Path, title: str, header: Sequence[str] = ()):
        self.path = Path(path)
        self.title = title
        self.header = list(header)
        self.sections: dict[str, list[str]] = {}

    def put(self, name: str, lines: Sequence[str]) -> None:
        """Sets (or replaces) section ``name`` (its first line is the heading) and writes the file."""
        self.sections[name] = list(lines)
        self.write()

    def running(self, name: str, heading: str, what: str) -> None:
        """Marks a part as started: what a cut-off run's report shows for it."""
        now = datetime.datetime.now().strftime("%H:%M:%S")
        self.put(name, [heading, "", f"**running** since {now} (no result: the run ended before this part did): {what}"])

    def text(self) -> str:
        out = [f"# {self.title}", "", *self.header]
        for lines in self.sections.values():
            out += ["", *lines]
        return "\n".join(out) + "\n"

    def write(self) -> None:
        write_atomic(self.path, self.text())
