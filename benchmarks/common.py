"""Timing helpers shared by the benchmark scripts: warm-up, interleaved repeats, medians, peak memory, the
machine description, Markdown tables and the section of ``BENCHMARKS.md`` each script keeps up to date."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import resource
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
DATA_ROOT = ROOT.parent / "shared" / "data"


@dataclass
class Timing:
    """Wall-clock samples (seconds) of one measured callable."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median (how noisy the machine was)."""
        if len(self.samples) < 4:
            return (max(self.samples) - min(self.samples)) / self.median if self.samples else 0.0
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / self.median


def time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, Timing]:
    """Time each callable ``repeats`` times after ``warmup`` untimed calls, alternating between them (and
    reversing the order every round) so that load from other processes hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {name: Timing() for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            out[name].samples.append(time_once(fns[name]))
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2 ** 20


def current_rss_mb() -> float:
    """Current resident memory of this process (MiB; Linux ``/proc``, else the peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def _proc_field(path: str, key: str) -> str | None:
    """The value after ``key:`` on the first matching line of a ``/proc`` file (None where absent)."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return None


def high_water_mb() -> float:
    """The RSS high-water mark (MiB): ``VmHWM`` of ``/proc/self/status`` (resettable through
    ``/proc/self/clear_refs``, while ``ru_maxrss`` also keeps the peaks of exited threads), else ``ru_maxrss``."""
    value = _proc_field("/proc/self/status", "VmHWM:")
    return int(value.split()[0]) / 1024 if value else peak_rss_mb()


def cpu_model() -> str:
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()


def machine() -> str:
    """One line describing the machine: CPU model, cores usable by this process, torch threads, versions."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu_model()}, {cores} cores usable ({os.cpu_count()} online), torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}, {gpu}")


def command_line() -> str:
    """The command that ran this script, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(ROOT):
        script = script.relative_to(ROOT)
    return " ".join([".venv/bin/python", str(script), *map(shlex.quote, sys.argv[1:])])


def base_parser(description: str, repeats: int = 5) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=repeats, help="timed repeats (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {BENCHMARKS_MD.name} alone")
    return parser


def apply_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table."""
    rows = [[_cell(v) for v in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 1e5:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return f"{value:.3g}"
    return str(value)


def ms(seconds: float) -> float:
    return seconds * 1e3


def verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def section(key: str, title: str, body: str) -> str:
    """A ``BENCHMARKS.md`` section with the machine, the command and the date."""
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return (f"## {title}\n\n"
            f"Machine: {machine()}  \nCommand: `{command_line()}`  \nRun: {stamp}\n\n{body.strip()}\n")


def update_benchmarks_md(key: str, text: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the section between ``<!-- bench:KEY -->`` and ``<!-- /bench:KEY -->`` (appended when absent)."""
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{start}\n{text.strip()}\n{end}"
    current = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(current):
        new = pattern.sub(lambda _: block, current)
    else:
        new = current.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


def report(key: str, title: str, body: str, write: bool) -> None:
    """Print the section, and write it into ``BENCHMARKS.md`` unless ``write`` is False."""
    text = section(key, title, body)
    print(text)
    if write:
        update_benchmarks_md(key, text)
        print(f"updated {BENCHMARKS_MD}")
