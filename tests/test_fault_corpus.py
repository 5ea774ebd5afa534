"""The fault corpus runner (fuzz/fault_corpus.py) kept from rotting: its measuring and judging on
commands with known behaviour, and its cheapest class (3, crafted undo journals) run in-process.

Whether class 3's cases hold depends on the library's undo; here only the runner is under test: every
case is tried and measured, the table reports it, and the exit code follows the verdicts."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fuzz"))

import fault_corpus  # noqa: E402
from faultlib import Ctx, Run, check  # noqa: E402


@pytest.fixture
def ctx(tmp_path) -> Ctx:
    return Ctx(tmp_path, timeout=30, kill_mb=400)


def _py(ctx: Ctx, d: Path, code: str) -> Run:
    return ctx.cli(["-c", code], d, argv0=[sys.executable])


def test_peak_rss_time_and_exit_code_are_the_commands_own(ctx, tmp_path):
    small = _py(ctx, tmp_path, "import sys; sys.exit(3)")
    big = _py(ctx, tmp_path, "b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096])")
    assert small.rc == 3 and not small.timed_out
    assert small.rss_mb < 60, small.rss_mb  # not the runner's (pytest's) own size
    assert big.rc == 0 and 200 <= big.rss_mb < 320, big.rss_mb
    assert ctx.runs == [small, big]


def test_a_hang_is_killed_at_the_timeout_and_a_runaway_at_the_memory_cap(tmp_path):
    ctx = Ctx(tmp_path, timeout=1.5, kill_mb=300)
    hang = _py(ctx, tmp_path, "import time; time.sleep(60)")
    assert hang.timed_out and hang.rc is None and 1.5 <= hang.seconds < 10
    assert check(hang) == [f"{hang.label}: no answer in {hang.seconds:.0f} s (killed)"]
    ctx.timeout = 60
    bomb = _py(ctx, tmp_path, "import time\nb = []\nwhile True:\n    b.append(bytearray(50 << 20)); "
                              "b[-1][::4096] = b'x' * len(b[-1][::4096]); time.sleep(0.05)")
    assert bomb.over_memory and bomb.rss_mb >= 300 and bomb.seconds < 30
    assert "runaway memory" in check(bomb)[0]


def test_children_are_counted(ctx, tmp_path):
    run = _py(ctx, tmp_path, "import subprocess, sys\n"
                             "ps = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1.5)']) "
                             "for _ in range(3)]\n[p.wait() for p in ps]")
    assert run.rc == 0 and run.max_children >= 3


def test_check_judges_tracebacks_exit_codes_mentions_and_memory():
    ok = Run(["python", "-m", "genrekit", "info", "x"], 1, b"x.wav: not audio or corrupt\n", 0.5, 80.0)
    assert check(ok, mention=("x.wav",)) == []
    tb = Run(ok.argv, 1, b"Traceback (most recent call last):\n  File ...\nRecursionError: too deep\n", 0.5, 80.0)
    assert check(tb) == ["genrekit info x: traceback (RecursionError: too deep)"]
    assert check(ok, rcs=(0,)) == ["genrekit info x: exit code 1, want 0"]
    assert check(ok, mention=("y.wav",)) == ["genrekit info x: output does not mention 'y.wav'"]
    fat = Run(ok.argv, 0, b"", 0.5, 1500.0)
    assert check(fat) == ["genrekit info x: peak RSS 1500 MB > 1024 MB"]


def test_every_issue_class_has_cases():
    classes = {c.cls for c in fault_corpus.CASES}
    assert classes == set(range(1, 11))
    names = [c.name for c in fault_corpus.CASES]
    assert len(names) == len(set(names))


def test_class_3_runs_in_process(capsys):
    """The cheapest class end to end: every case tried and measured, the table and exit code agree."""
    rc = fault_corpus.main(["--class", "3", "--timeout", "120"])
    out = capsys.readouterr().out
    row = re.search(r"^ 3 undo trusting its journal\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+) MB[ +]\s*([\d.]+) s[ +]$", out, re.M)
    assert row, out
    tried, held, skipped, worst_mb, worst_s = int(row[1]), int(row[2]), int(row[3]), int(row[4]), float(row[5])
    n = sum(c.cls == 3 for c in fault_corpus.CASES)
    assert tried == n and skipped == 0 and 0 <= held <= n
    assert 10 < worst_mb <= 1024 and 0 < worst_s < 120
    assert rc == (0 if held == tried else 1)
    if held < tried:  # each failing case is listed with why
        assert "failing cases:" in out and out.count("\n[3] ") == tried - held
