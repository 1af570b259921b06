"""Part 1: the loss library's tests (tests/rnnt), with the Triton kernels compiled on CUDA.

On a CUDA machine tests/rnnt/triton_device.py leaves TRITON_INTERPRET unset, so every kernel
test compiles and runs the kernels natively; on a CPU it sets TRITON_INTERPRET=1 (smoke mode).
The counts are read from pytest's verbose lines, so a run cut off by its time limit still
reports the tests that finished.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from asr_recipes.tools.gpu_check.report import fenced, shown, table
from asr_recipes.tools.gpu_check.timebox import Finished

#: "tests/rnnt/test_x.py::test_y[param] PASSED   [ 12%]"
_RESULT = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
#: -rfE short summary: "FAILED tests/rnnt/test_x.py::test_y - AssertionError: ..."
_SUMMARY = re.compile(r"^(FAILED|ERROR) (\S+::\S+)(?: - (.*))?$")
OUTCOMES = ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS")


def pytest_command(python: str, paths: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """Verbose (one line per test), short failure reasons at the end, no cache directory."""
    return [python, "-m", "pytest", *paths, "-v", "-rfE", "-p", "no:cacheprovider", *extra]


@dataclass
class TestCounts:
    counts: Counter = field(default_factory=Counter)  # outcome -> tests
    problems: dict = field(default_factory=dict)  # failed/errored test id -> short reason

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> bool:
        return self.total > 0 and not (self.counts["FAILED"] or self.counts["ERROR"] or self.counts["XPASS"])


def parse_pytest(output: str) -> TestCounts:
    """Outcome counts of ``pytest -v -rfE`` output (a test's setup error counts as ERROR once)."""
    result = TestCounts()
    seen: dict[str, str] = {}
    for line in output.splitlines():
        m = _RESULT.match(line)
        if m:
            test, outcome = m.groups()
            if seen.get(test) == "PASSED" and outcome == "ERROR":  # passed, then its teardown failed
                result.counts["PASSED"] -= 1
            seen[test] = outcome
            result.counts[outcome] += 1
            continue
        m = _SUMMARY.match(line)
        if m:
            result.problems[m.group(2)] = (m.group(3) or m.group(1))[:200]
    return result


def kernel_section(heading: str, finished: Finished, counts: TestCounts, where: str) -> list[str]:
    """The report section: status, counts per outcome, failed tests, the command."""
    status = finished.status()
    if finished.ok != counts.ok and not finished.timed_out:
        status += " (pytest's exit status and the counted outcomes disagree: see the log)"
    lines = [heading, "", f"{status}, {finished.seconds:.0f} s, {where}. `{shown(finished.command)}`", ""]
    lines += table([o.lower() for o in OUTCOMES] + ["total"],
                   [[counts.counts[o] for o in OUTCOMES] + [counts.total]], "r" * (len(OUTCOMES) + 1))
    if counts.problems:
        lines += ["", "Failed:", ""] + [f"- `{test}`: {reason}" for test, reason in counts.problems.items()]
    if not finished.ok:
        lines += ["", "Last lines of the output:", "", *fenced(finished.output, 25)]
    return lines
