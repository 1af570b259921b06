"""A small reader of egs/*/run.sh, local/stages.sh and local/data_stages.sh for the contract
tests: logical lines, stage blocks, the shared stage functions a recipe calls, and the lines
outside stage blocks that would do work.

It understands the subset of bash the recipes are written in (local/stages.sh's header shows
the pattern): ``if should_run N DIR; then ... fi`` blocks for a corpus's data stages, calls of
the shared ``stage_<name> ARG...`` functions, whose bodies in local/stages.sh (stages 4-10) or
local/data_stages.sh (data stages 0-2 of a downloaded corpus) have a line
``should_run N DIR || return 0`` (a helper function of the same file that a stage calls, such
as ``_decode_each``, is read as part of that stage); ``name=value`` definitions (multi-line
strings included), ``case`` statements that only define variables or ``die``. Anything else
outside a stage is reported, so a recipe that starts doing work before its stage guards fails
the test.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAGES_SH = REPO / "local" / "stages.sh"
DATA_STAGES_SH = REPO / "local" / "data_stages.sh"

STAGE_GUARD = re.compile(r"^if\s+.*\b(?:should_run|stage_enabled)\s+(\d+)\b(?:\s+([^\s;]+))?")
FUNCTION_GUARD = re.compile(r"^should_run\s+(\d+)\s+(\S+)\s+\|\|\s+return 0$")
FUNCTION_START = re.compile(r"^(\w+)\(\)\s*\{$")
STAGE_CALL = re.compile(r"^(stage_\w+)\b\s*(.*)$")
SHIFT = re.compile(r"^shift(?:\s+(\d+))?$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
#: Commands allowed inside $(...) of a definition outside stage blocks (they only compute paths).
PURE_COMMANDS = {"cd", "pwd", "dirname", "basename", "realpath", "echo", "["}
ALLOWED_STATEMENTS = [
    re.compile(r"^set -euo pipefail$"),
    re.compile(r'^\. "\$\(dirname "\$\{BASH_SOURCE\[0\]\}"\)/\.\./\.\./local/common\.sh"$'),
    re.compile(r'^\. "\$ASR_RECIPES_ROOT/local/(?:parse_options|recipe_options|stages|data_stages)\.sh"$'),
    re.compile(r"^resolve_(?:recipe_options|musan_option)$"),
    re.compile(r'^case "\$\w+" in$'),
    re.compile(r"^esac$"),
]
CASE_ARM = re.compile(r"^[\w*|.-]+\)\s*(.*?)\s*;;$")
ENTRY_POINT = re.compile(r"-m\s+asr_recipes\.bin\.(\w+)")


@dataclass
class Stage:
    number: int
    guard: str  # the `if ...; then` line, or the function's `should_run ... || return 0`
    marker_dir: str | None  # DIR of `should_run N DIR`, as written
    lines: list[tuple[int, str]] = field(default_factory=list)
    function: str | None = None  # the shared stage function (local/stages.sh, local/data_stages.sh) that runs it
    call_args: list[str] = field(default_factory=list)  # the recipe's arguments to that function
    shifted: int = 0  # how many leading arguments the function shifts away before its "$@"

    def entry_points(self) -> list[str]:
        return [m.group(1) for _, line in self.lines for m in ENTRY_POINT.finditer(line)]

    def invocations(self) -> list[tuple[str, list[str]]]:
        """(entry point, its arguments after ``-m asr_recipes.bin.X``, shell-unquoted), with a
        shared function's ``"$@"`` replaced by the recipe's arguments (those left after its ``shift``)."""
        calls, rest = [], self.call_args[self.shifted:]
        for _, line in self.lines:
            m = ENTRY_POINT.search(line)
            if m:
                args = []
                for word in shlex.split(line[m.end():]):
                    args += rest if word == "$@" else [word]
                calls.append((m.group(1), args))
        return calls


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first physical line number, text) per command: continuations and multi-line quoted
    strings joined, comments and blank lines dropped, runs of white space made one blank."""
    out, buf, start, quote, number = [], [], None, None, 1
    i = 0
    while i < len(text):
        c = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if start is None and not c.isspace():
            start = number
        if quote == "'":
            buf.append(c)
            quote = None if c == "'" else quote
        elif quote == '"':
            if c == "\\" and nxt:
                buf.append(c + nxt)
                number += nxt == "\n"
                i += 2
                continue
            buf.append(c)
            quote = None if c == '"' else quote
        elif c == "\\" and nxt == "\n":  # continuation line
            buf.append(" ")
            number += 1
            i += 2
            continue
        elif c == "\\" and nxt:
            buf.append(c + nxt)
            i += 2
            continue
        elif c in "'\"":
            quote = c
            buf.append(c)
        elif c == "#" and (not buf or buf[-1] in " \t"):
            while i < len(text) and text[i] != "\n":  # a comment, up to the end of the line
                i += 1
            continue
        elif c == "\n":
            joined = "".join(buf).strip()
            if joined:
                out.append((start, re.sub(r"\s+", " ", joined)))
            buf, start = [], None
        else:
            buf.append(c)
        number += c == "\n"
        i += 1
    joined = "".join(buf).strip()
    if joined:
        out.append((start, re.sub(r"\s+", " ", joined)))
    return out


def function_bodies(text: str) -> dict[str, list[tuple[int, str]]]:
    """The logical lines of each ``name() {`` ... ``}`` function in ``text``, by name."""
    bodies, current = {}, None
    for number, line in logical_lines(text):
        if current is None:
            m = FUNCTION_START.match(line)
            if m:
                current = m.group(1)
                bodies[current] = []
        elif line == "}":
            current = None
        else:
            bodies[current].append((number, line))
    return bodies


def _inline_helpers(body: list[tuple[int, str]], helpers: dict[str, list[tuple[int, str]]], depth: int = 0):
    """``body`` with each call of a helper function of the same file (``_decode_each ARG...``)
    replaced by the helper's lines, its ``"$@"`` written as the call's arguments, so that the
    entry points a helper runs count as the calling stage's."""
    if depth > 8:
        raise ValueError("helper functions call each other too deeply (recursion?)")
    out = []
    for number, line in body:
        name, _, args = line.partition(" ")
        if name in helpers and not name.startswith("stage_"):
            out += _inline_helpers([(n, h.replace('"$@"', args)) for n, h in helpers[name]], helpers, depth + 1)
        else:
            out.append((number, line))
    return out


def shared_stage_functions(text: str | None = None) -> dict[str, Stage]:
    """The stage functions of local/stages.sh (or of ``text``) by name, each with its stage
    number, marker dir, body lines (the guard line excluded, the file's helper functions that
    it calls written in) and how many arguments it shifts."""
    text = STAGES_SH.read_text() if text is None else text
    bodies = function_bodies(text)
    found = {}
    for name, body in bodies.items():
        guard = next((i for i, (_, b) in enumerate(body) if FUNCTION_GUARD.match(b)), None)
        if name.startswith("stage_") and guard is not None:
            g = FUNCTION_GUARD.match(body[guard][1])
            shifts = [SHIFT.match(b) for _, b in body]
            shifted = sum(int(m.group(1) or 1) for m in shifts if m)
            found[name] = Stage(int(g.group(1)), g.group(0), g.group(2), _inline_helpers(body[guard + 1:], bodies),
                                function=name, shifted=shifted)
    return found


def data_stage_functions() -> dict[str, Stage]:
    """The data stage functions of local/data_stages.sh (stages 0-2 of a downloaded corpus), as
    shared_stage_functions reads them."""
    return shared_stage_functions(DATA_STAGES_SH.read_text())


def parse(text: str) -> tuple[list[Stage], list[tuple[int, str]]]:
    """The recipe's stages in order (its own blocks and the shared stage functions it calls,
    with their arguments), and the logical lines outside them."""
    shared = {**data_stage_functions(), **shared_stage_functions()}
    stages, outside = [], []
    current, depth = None, 0
    for number, line in logical_lines(text):
        if current is None:
            m = STAGE_GUARD.match(line)
            call = STAGE_CALL.match(line)
            if m:
                current, depth = Stage(int(m.group(1)), line, m.group(2)), 1
                stages.append(current)
            elif call and call.group(1) in shared:
                template = shared[call.group(1)]
                stages.append(Stage(template.number, template.guard, template.marker_dir, template.lines,
                                    function=template.function, call_args=shlex.split(call.group(2)),
                                    shifted=template.shifted))
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


def literal_defaults(text: str, recipe: str | None = None) -> dict[str, str]:
    """Literal option defaults of one script (``name=value`` lines above parse_options.sh),
    unquoted. ``recipe``: the recipe directory's name, the value of ``$(basename "$RECIPE_DIR")``."""
    head = re.split(r'^\. "\$ASR_RECIPES_ROOT/local/parse_options\.sh"$', text, maxsplit=1, flags=re.M)[0]
    found = {}
    for _, line in logical_lines(head):
        m = re.match(r"^([a-z][a-z0-9_]*)=(.*)$", line)
        if not m or m.group(1) == "help_message":
            continue
        if m.group(2) == '$(basename "$RECIPE_DIR")' and recipe:
            found[m.group(1)] = recipe
        elif "$(" not in m.group(2):
            found[m.group(1)] = shlex.split(m.group(2))[0] if m.group(2) else ""
    return found


def defaults(text: str, recipe: str | None = None) -> dict[str, str]:
    """A recipe's literal option defaults: those of local/recipe_options.sh, then its own, which
    override them."""
    return {**literal_defaults((REPO / "local" / "recipe_options.sh").read_text(), recipe),
            **literal_defaults(text, recipe)}


def read(path: Path) -> str:
    return Path(path).read_text()
