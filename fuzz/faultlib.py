"""The machinery of the fault corpus (``fuzz/fault_corpus.py``): run the real CLI in a subprocess under a
timeout, measure its peak memory and time, and judge what came back.

Why subprocesses: the faults of issue 21 are about what a user sees and keeps (exit codes, tracebacks,
files on disk, hangs, memory), which only the real command shows. Peak RSS is the largest of the child's
own high-water mark (``os.wait4``'s ``ru_maxrss``, which covers its waited-for descendants too) and the
summed RSS of its whole process group sampled every 0.1 s (so ``--jobs`` workers count together). A
process group over ``kill_mb`` (default 3 GB) is killed at once: a decode bomb must not take the machine
down with it.

Each command is started by a tiny launcher (``python -S``, ~10 MB) that forks it and reports its
``os.wait4`` figures: a child started straight from this runner would inherit the runner's own memory
high-water mark (``ru_maxrss`` survives exec, and vfork shares the parent's), so every figure would be
at least the runner's size.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
RSS_LIMIT_MB = 1024.0  # issue 21's target: peak RSS of any command <= 1 GB
SR = 22050


@dataclass
class Run:
    """One finished command: what it printed and what it cost."""

    argv: list[str]
    rc: int | None
    out: bytes
    seconds: float
    rss_mb: float
    timed_out: bool = False
    over_memory: bool = False
    max_children: int = 0

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")

    @property
    def label(self) -> str:
        argv = ["genrekit", *self.argv[3:]] if self.argv[1:3] == ["-m", "genrekit"] else self.argv
        words = [a for a in argv if not a.startswith("/")][:4]
        return " ".join(a if len(a) < 40 else a[:37] + "..." for a in words)


# Forks the command, waits for it, and writes "exit-code maxrss-kB" into the file argv[1].
LAUNCHER = (
    "import os, signal, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGTERM, lambda *a: os.kill(pid, signal.SIGTERM))\n"
    "_, status, ru = os.wait4(pid, 0)\n"
    "open(sys.argv[1], 'w').write(f'{os.waitstatus_to_exitcode(status)} {ru.ru_maxrss}')\n"
)


def _group_rss_kb(pgid: int) -> tuple[int, int]:
    """(summed VmRSS in kB of every process in group ``pgid`` but its launcher, how many there are)."""
    total = count = 0
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == pgid:
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid:
                continue
            for line in Path(f"/proc/{d}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
            count += 1
        except (OSError, ValueError, IndexError):
            continue
    return total, count


class Proc:
    """A started command; :meth:`wait` measures it to the end (or kills it at the timeout or memory cap)."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict, timeout: float, kill_mb: float,
                 stdin: bytes | None = None):
        self.argv, self.timeout, self.kill_mb = argv, timeout, kill_mb
        self._out = tempfile.TemporaryFile()
        fd, self._result = tempfile.mkstemp(prefix="genrekit-fault-rc-")
        os.close(fd)
        self.t0 = time.monotonic()
        self.popen = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, self._result, *argv], cwd=cwd, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                      start_new_session=True)
        if stdin is not None:
            self.popen.stdin.write(stdin)
            self.popen.stdin.close()
        self.peak_kb = 0
        self.max_children = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self) -> Run:
        timed_out = over = False
        status = usage = None
        next_sample = 0.0
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                break
            now = time.monotonic()
            if now >= next_sample:
                kb, n = _group_rss_kb(self.pid)
                self.peak_kb, self.max_children = max(self.peak_kb, kb), max(self.max_children, n - 1)
                next_sample = now + 0.1
                if kb > self.kill_mb * 1024:
                    over = True
            if over or now - self.t0 > self.timeout:
                timed_out = not over
                self.kill()
                _, status, usage = os.wait4(self.pid, 0)
                break
            time.sleep(0.02)
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - self.t0
        self.kill()  # any process it left behind in its group
        self._out.seek(0)
        out = self._out.read()
        self._out.close()
        try:
            rc_text, maxrss_text = Path(self._result).read_text().split()
            rc, maxrss_kb = int(rc_text), int(maxrss_text)
        except (OSError, ValueError):  # the launcher was killed (timeout, memory): the sampled figures stand
            rc, maxrss_kb = None, 0
        os.unlink(self._result)
        rss_mb = max(maxrss_kb, self.peak_kb) / 1024
        if timed_out or over:
            rc = None
        return Run(self.argv, rc, out, seconds, rss_mb, timed_out, over, self.max_children)


@dataclass
class Ctx:
    """Settings of one corpus run, and the commands the current case has run."""

    tmp: Path
    timeout: float = 120.0
    kill_mb: float = 3072.0
    python: str = sys.executable
    runs: list[Run] = field(default_factory=list)

    def env(self, d: Path, **extra: str) -> dict[str, str]:
        """A private home for each case (journals, state, indexes); one content cache for the whole run."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GENREKIT_", "XDG_"))}
        env.update(PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
                   HOME=str(d / "home"), XDG_STATE_HOME=str(d / "state"), XDG_CACHE_HOME=str(self.tmp / "cache"),
                   PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)
        if os.environ.get("GENREKIT_SHARED"):
            env["GENREKIT_SHARED"] = os.environ["GENREKIT_SHARED"]
        return env

    def spawn(self, args: list, d: Path, *, argv0: list[str] | None = None, env: dict | None = None,
              stdin: bytes | None = None) -> Proc:
        argv = (argv0 or [self.python, "-m", "genrekit"]) + [os.fspath(a) for a in args]
        (d / "home").mkdir(parents=True, exist_ok=True)
        return Proc(argv, cwd=d, env=env or self.env(d), timeout=self.timeout, kill_mb=self.kill_mb, stdin=stdin)

    def finish(self, proc: Proc) -> Run:
        run = proc.wait()
        self.runs.append(run)
        return run

    def cli(self, args: list, d: Path, **kw) -> Run:
        """Run ``python -m genrekit ARGS`` in ``d`` and measure it."""
        return self.finish(self.spawn(args, d, **kw))


def check(run: Run, *, rcs=(0, 1), mention=(), absent=(), rss_mb: float = RSS_LIMIT_MB) -> list[str]:
    """What is wrong with a run, by the rules every case shares: it ends by itself in time and within
    memory, prints no traceback, exits with one of ``rcs``, names each of ``mention`` and none of ``absent``."""
    what = run.label
    if run.timed_out:
        return [f"{what}: no answer in {run.seconds:.0f} s (killed)"]
    if run.over_memory:
        return [f"{what}: killed at {run.rss_mb:.0f} MB (runaway memory)"]
    problems = []
    if "Traceback (most recent call last)" in run.text:
        tail = run.text.split("Traceback (most recent call last)")[-1]
        errors = re.findall(r"^(\w+(?:\.\w+)*(?:Error|Exception|Exit|Interrupt)\b.*)$", tail, re.M)
        problems.append(f"{what}: traceback ({errors[0][:120] if errors else 'see its output'})")
    if run.rc not in rcs:
        want = "non-zero" if 0 not in rcs and len(rcs) > 3 else " or ".join(map(str, rcs))
        problems.append(f"{what}: exit code {run.rc}, want {want}")
    if run.rss_mb > rss_mb:
        problems.append(f"{what}: peak RSS {run.rss_mb:.0f} MB > {rss_mb:.0f} MB")
    for m in mention:
        if m not in run.text:
            problems.append(f"{what}: output does not mention {m!r}")
    for a in absent:
        if a in run.text:
            problems.append(f"{what}: output has {a!r}")
    return problems


# ------------------------------------------------------------------------------------ inputs
def tone(seconds: float = 4.0, sr: int = SR, freq: float = 440.0, channels: int = 1, seed: int = 0,
         amplitude: float = 0.4) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    y = amplitude * np.sin(2 * np.pi * freq * t) + 0.02 * amplitude * rng.standard_normal(t.size)
    return np.stack([y] * channels, axis=1).astype(np.float32) if channels > 1 else y.astype(np.float32)


def write_audio(path: Path, y: np.ndarray, sr: int = SR, **kw) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, **kw)
    return path


def audio_bytes(y: np.ndarray, sr: int = SR, *, format: str, **kw) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, sr, format=format, **kw)
    return buf.getvalue()


def library(d: Path, n: int = 2, *, ext: str = "flac", seconds: float = 4.0) -> tuple[Path, dict[Path, bytes]]:
    """A small music folder of ``n`` tones, and each file's bytes (to check them unchanged later)."""
    lib = d / "lib"
    files = {}
    for i in range(n):
        p = write_audio(lib / f"track{i}.{ext}", tone(seconds, freq=220.0 * (i + 1), seed=i))
        files[p] = p.read_bytes()
    return lib, files


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unchanged(files: dict[Path, bytes], why: str = "") -> list[str]:
    """Problems for every file whose bytes are not the recorded ones."""
    out = []
    for p, data in files.items():
        if not os.path.lexists(p):
            out.append(f"{p.name}: gone{why}")
        elif p.read_bytes() != data:
            out.append(f"{p.name}: bytes changed{why}")
    return out


# ------------------------------------------------------------------------------------ the registry
@dataclass
class Case:
    cls: int
    name: str
    fn: Callable[[Ctx, Path], list[str]]


@dataclass
class Outcome:
    case: Case
    problems: list[str]
    rss_mb: float = 0.0
    seconds: float = 0.0
    skipped: str = ""
    runs: list = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not self.problems


CASES: list[Case] = []


def case(cls: int, name: str):
    def register(fn):
        CASES.append(Case(cls, name, fn))
        return fn
    return register


class Skip(Exception):
    """A case that cannot run here (a tool or privilege missing): reported, not counted."""
