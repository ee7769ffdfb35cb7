"""Child processes of the benchmark: the simulator (JSON lines on stdin/stdout) and the clients.

The orchestrator is plain synchronous code: it starts children, sends a command, and waits for
the one-line answer with a deadline (``select`` on the pipe, never a blind blocking read), so a
stuck child fails the run with a clear message instead of hanging it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = [
    "BenchError",
    "Child",
    "SimProcess",
    "cpu_seconds",
    "peak_rss_kb",
    "python_argv",
    "rss_kb",
]

_STOP_WAIT: Final = 10.0  # seconds a child gets to exit after SIGINT before it is killed


class BenchError(Exception):
    """The benchmark cannot go on (a child died, timed out or answered with an error)."""


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` now, in KiB (0 when unknown, e.g. not Linux)."""
    return _status_kb(pid, "VmRSS")


def peak_rss_kb(pid: int) -> int:
    """Peak resident set size of ``pid`` so far (``VmHWM``), in KiB (0 when unknown)."""
    return _status_kb(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far, all threads (0 when unknown)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            # The command name may hold spaces; the fields we want follow its closing paren.
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def python_argv(profile: Path | None, task_cpu: Path | None = None) -> list[str]:
    """This interpreter, under ``cProfile`` writing to ``profile`` when one is given, or under
    :mod:`benchmarks._taskcpu` writing to ``task_cpu``."""
    if profile is not None:
        return [sys.executable, "-m", "cProfile", "-o", str(profile)]
    if task_cpu is not None:
        return [sys.executable, "-m", "benchmarks._taskcpu", "-o", str(task_cpu)]
    return [sys.executable]


class Child:
    """A child process; :meth:`stop` sends SIGINT, waits, then kills."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        stdout: IO[bytes] | int | None = None,
        stderr: IO[bytes] | int | None = None,
        pipe_stdio: bool = False,
    ) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.PIPE if pipe_stdio else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdio else stdout,
            stderr=stderr,
        )

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def check_alive(self) -> None:
        """Raise :class:`BenchError` if the child has exited."""
        code = self.proc.poll()
        if code is not None:
            raise BenchError(f"{self.name} exited early with code {code}")

    def stop(self) -> int | None:
        """Ask the child to stop (SIGINT), kill it after a grace period; return its exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(_STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        return self.proc.returncode


class SimProcess(Child):
    """The simulator child (``benchmarks._simproc``), driven by JSON commands."""

    def __init__(
        self,
        *,
        seed: int = 0,
        stderr: IO[bytes] | int | None = None,
        profile: Path | None = None,
        check_bids: bool = False,
    ) -> None:
        argv = [*python_argv(profile), "-m", "benchmarks._simproc", "--seed", str(seed)]
        if check_bids:
            argv.append("--check-bids")
        super().__init__("simulator", argv, stderr=stderr, pipe_stdio=True)
        self._buf = b""
        try:
            ready = self._read_line(30.0)
        except BaseException:
            self.stop()  # never leave a half-started simulator behind
            raise
        if ready.get("event") != "ready":
            self.stop()
            raise BenchError(f"simulator did not start: {ready}")
        self.ws_url: str = ready["ws_url"]
        self.http_url: str = ready["http_url"]
        #: The simulated Express Relay deployment: ``program_id``, ``relayer_signer``,
        #: ``fee_receiver_relayer`` (base58), which clients need to build valid bids.
        self.deployment: dict[str, str] = {
            k: ready[k] for k in ("program_id", "relayer_signer", "fee_receiver_relayer")
        }

    def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name}: no answer within {timeout:.0f} s")
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                self.check_alive()
                raise BenchError(f"{self.name} closed its output")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        doc: dict[str, Any] = orjson.loads(line)
        return doc

    def command(self, answer_within: float, **cmd: Any) -> dict[str, Any]:
        """Send one command and return its answer; raise :class:`BenchError` if it failed."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(orjson.dumps(cmd) + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.check_alive()
            raise
        reply = self._read_line(answer_within)
        if not reply.get("ok"):
            raise BenchError(f"simulator {cmd['cmd']}: {reply.get('error', reply)}")
        if reply.get("internal_errors"):
            raise BenchError(f"simulator reported {reply['internal_errors']} internal errors")
        return reply

    def quit(self) -> None:
        """Ask the simulator to exit, then make sure it did."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(b'{"cmd": "quit"}\n')
                self.proc.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(_STOP_WAIT)
        self.stop()
