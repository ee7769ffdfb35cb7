"""Where a trio program's event loop spends its CPU, by task, at almost no cost to the program.

``python -m benchmarks._taskcpu -o OUT -m MODULE [ARGS...]`` runs MODULE as ``__main__`` (as
``python -m MODULE ARGS...`` would) with a trio instrument that adds up the thread CPU time
(``time.thread_time``) of every task step, by task name. When ``trio.run`` returns or raises,
OUT gets a table: each task's CPU, its share of the loop thread's CPU since ``trio.run`` began,
and its steps; the rest is trio's own work (scheduling, polling for I/O).

cProfile (``--profile``) says which functions are hot but slows every call several times over,
so its timings mean little. This costs two clock reads a step, so the shares it reports are the
program's own: which task to look at, and how much the loop has to spare.
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
import trio.abc

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["TaskCpu", "main"]


class TaskCpu(trio.abc.Instrument):
    """A trio instrument: thread CPU seconds and steps per task name."""

    def __init__(self) -> None:
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self.steps: defaultdict[str, int] = defaultdict(int)
        self._step_began = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        """Note the thread's CPU clock as the step begins."""
        self._step_began = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        """Charge the step's CPU to its task's name."""
        self.cpu[task.name] += time.thread_time() - self._step_began
        self.steps[task.name] += 1

    def table(self, total: float) -> str:
        """The report: `total` is the loop thread's CPU seconds over the same span."""
        in_tasks = sum(self.cpu.values())
        rows = [
            (name, cpu, self.steps[name])
            for name, cpu in sorted(self.cpu.items(), key=lambda item: -item[1])
        ]
        rows.append(("(trio: scheduling, polling for I/O)", total - in_tasks, 0))
        width = max(len(name) for name, _, _ in rows)
        lines = [f"event loop thread: {total:.3f} s of CPU", ""]
        lines.append(f"{'task':<{width}}  {'CPU s':>8}  {'share':>6}  {'steps':>9}")
        for name, cpu, steps in rows:
            share = cpu / total if total > 0 else 0.0
            lines.append(f"{name:<{width}}  {cpu:8.3f}  {share:6.1%}  {steps:9,}")
        return "\n".join(lines) + "\n"


def _instrumented(run: Callable[..., Any], out: Path) -> Callable[..., Any]:
    """`trio.run`, with a :class:`TaskCpu` added and its table written to `out` at the end."""

    def run_with_task_cpu(*args: Any, **kwargs: Any) -> Any:
        counter = TaskCpu()
        kwargs["instruments"] = [*kwargs.get("instruments", ()), counter]
        began = time.thread_time()
        try:
            return run(*args, **kwargs)
        finally:
            # Written on the way out, even when the program ends by an exception (the
            # benchmark stops its clients with SIGINT: the floor ends by KeyboardInterrupt).
            out.write_text(counter.table(time.thread_time() - began), encoding="utf-8")

    return run_with_task_cpu


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m benchmarks._taskcpu``."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        usage="python -m benchmarks._taskcpu -o OUT -m MODULE [ARGS...]",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("-o", "--out", type=Path, required=True, help="where the table goes")
    # Everything after `-m MODULE` is the module's own (options included), as with `python -m`.
    if "-m" not in args[:-1]:
        parser.error("-m MODULE is required")
    at = args.index("-m")
    opts = parser.parse_args(args[:at])
    module, module_args = args[at + 1], args[at + 2 :]
    # Only calls made after this see the change: the module looks `trio.run` up when it runs.
    trio.run = _instrumented(trio.run, opts.out.resolve())  # type: ignore[assignment]
    sys.argv = [module, *module_args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
