"""A small reader of egs/*/run.sh for the contract tests: logical lines, stage blocks, and the
lines outside stage blocks that would do work.

It understands the subset of bash the recipes are written in (local/common.sh's header shows
the pattern): ``if should_run N DIR; then ... fi`` stage blocks, ``name=value`` definitions,
``case`` statements that only define variables or ``die``. Anything else outside a stage
block is reported, so a recipe that starts doing work before its stage guards fails the test.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

STAGE_GUARD = re.compile(r"^if\s+.*\b(?:should_run|stage_enabled)\s+(\d+)\b(?:\s+([^\s;]+))?")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
#: Commands allowed inside $(...) of a definition outside stage blocks (they only compute paths).
PURE_COMMANDS = {"cd", "pwd", "dirname", "basename", "realpath", "echo", "["}
ALLOWED_STATEMENTS = [
    re.compile(r"^set -euo pipefail$"),
    re.compile(r'^\. "\$\(dirname "\$\{BASH_SOURCE\[0\]\}"\)/\.\./\.\./local/common\.sh"$'),
    re.compile(r'^\. "\$ASR_RECIPES_ROOT/local/parse_options\.sh"$'),
    re.compile(r'^case "\$\w+" in$'),
    re.compile(r"^esac$"),
]
CASE_ARM = re.compile(r"^[\w*|.-]+\)\s*(.*?)\s*;;$")
ENTRY_POINT = re.compile(r"-m\s+asr_recipes\.bin\.(\w+)")


@dataclass
class Stage:
    number: int
    guard: str  # the `if ...; then` line
    marker_dir: str | None  # DIR of `should_run N DIR`, as written
    lines: list[tuple[int, str]] = field(default_factory=list)

    def entry_points(self) -> list[str]:
        return [m.group(1) for _, line in self.lines for m in ENTRY_POINT.finditer(line)]

    def invocations(self) -> list[tuple[str, list[str]]]:
        """(entry point, its arguments after ``-m asr_recipes.bin.X``, shell-unquoted)."""
        calls = []
        for _, line in self.lines:
            m = ENTRY_POINT.search(line)
            if m:
                calls.append((m.group(1), shlex.split(line[m.end():])))
        return calls


def strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a # outside quotes, at the start or after a blank)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
            elif ch == "\\" and quote == '"':
                continue
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first physical line number, text) per command line: continuations joined, comments and
    blank lines dropped."""
    out, buf, start = [], "", None
    for number, line in enumerate(text.splitlines(), 1):
        if start is None:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        joined = strip_comment(buf + line).strip()
        if joined:
            out.append((start, re.sub(r"\s+", " ", joined)))
        buf, start = "", None
    return out


def parse(text: str) -> tuple[list[Stage], list[tuple[int, str]]]:
    """Stage blocks in order, and the logical lines outside them."""
    stages, outside = [], []
    current, depth = None, 0
    for number, line in logical_lines(text):
        if current is None:
            m = STAGE_GUARD.match(line)
            if m:
                current, depth = Stage(int(m.group(1)), line, m.group(2)), 1
                stages.append(current)
            else:
                outside.append((number, line))
            continue
        # `if ...; then ...; fi` on one line opens and closes a block.
        depth += bool(re.match(r"^if\b", line)) - bool(re.search(r"(^|;\s*)fi$", line))
        if depth == 0:
            current = None
            continue
        current.lines.append((number, line))
    if current is not None:
        raise ValueError(f"stage {current.number}: `{current.guard}` has no closing fi")
    return stages, outside


def substitutions(line: str) -> list[str]:
    """Bodies of the $(...) command substitutions in ``line``, nested ones included (each body
    with its own nested substitutions replaced by ``_``)."""
    bodies, stack, i = [], [], 0
    while i < len(line):
        if line.startswith("$(", i):
            stack.append([i + 2, []])
            i += 2
            continue
        if line[i] == ")" and stack:
            start, nested = stack.pop()
            body = line[start:i]
            for inner in nested:
                body = body.replace(f"$({inner})", "_")
            bodies.append(body)
            if stack:
                stack[-1][1].append(line[start:i])
        i += 1
    return bodies


def _pure_substitutions(line: str) -> bool:
    """True when every $(...) in the line only runs PURE_COMMANDS."""
    for body in substitutions(line):
        for segment in re.split(r"&&|\|\||;|\|", body):
            words = segment.split()
            if words and words[0] not in PURE_COMMANDS:
                return False
    return True


def work_outside_stages(text: str) -> list[str]:
    """``line N: text`` for every line outside the stage blocks that is not a definition."""
    _, outside = parse(text)
    bad = []
    for number, line in outside:
        if any(p.match(line) for p in ALLOWED_STATEMENTS):
            continue
        if ASSIGNMENT.match(line) and _pure_substitutions(line):
            continue
        arm = CASE_ARM.match(line)
        if arm:
            body = [s.strip() for s in arm.group(1).split(";") if s.strip()]
            if all((ASSIGNMENT.match(s) and _pure_substitutions(s)) or s.startswith("die ") for s in body):
                continue
        bad.append(f"line {number}: {line}")
    return bad


def defaults(text: str) -> dict[str, str]:
    """Literal option defaults (``name=value`` lines above parse_options.sh), unquoted."""
    head = text.split("parse_options.sh", 1)[0]
    found = {}
    for _, line in logical_lines(head):
        m = re.match(r"^([a-z][a-z0-9_]*)=(\S*)", line)
        if m and "$(" not in m.group(2):
            found[m.group(1)] = shlex.split(m.group(2))[0] if m.group(2) else ""
    return found


def read(path: Path) -> str:
    return Path(path).read_text()
