"""Figure h: CLI start-up -- ``cmer --help`` and every subcommand's ``--help`` against ``python -c pass``.

Each command runs as a fresh process (the installed ``cmer`` entry point of this virtual environment), interleaved
with the interpreter's bare start-up, so that the load of the machine hits all alike. Targets (issue 15):
``cmer --help`` under 0.5 s, every subcommand's ``--help`` under 1 s.

    .venv/bin/python benchmarks/bench_cli.py [--repeats 5]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import base_parser, report, table, verdict

from contrastive_mer.cli.main import SUBCOMMANDS

CMER = Path(sys.executable).with_name("cmer")


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=5)
    args = parser.parse_args()
    commands = {"python -c pass": [sys.executable, "-c", "pass"], "cmer --help": [str(CMER), "--help"]}
    commands |= {f"cmer {name} --help": [str(CMER), name, "--help"] for name in SUBCOMMANDS}
    for cmd in commands.values():  # warm the file cache
        wall(cmd)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for r in range(args.repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            samples[name].append(wall(commands[name]))
    base = statistics.median(samples["python -c pass"])
    rows, met = [], True
    for name in names:
        med = statistics.median(samples[name])
        target = None if name == "python -c pass" else (0.5 if name == "cmer --help" else 1.0)
        ok = target is None or med < target
        met &= ok
        rows.append([name, 1e3 * med, f"{med / base:.1f}x", "-" if target is None else
                     f"< {target:g} s: {verdict(ok)}"])
    body = table(["command", "wall ms (median)", "vs python -c pass", "target"], rows)
    body += (f"\n\nMedians of {args.repeats} interleaved runs per command after one warm-up run, each a fresh "
             f"process. All targets: {verdict(met)}. `cmer --help` imports no subcommand module "
             "(`cli/main.py` builds the subcommand list from its one-line help texts); a subcommand's `--help` "
             "imports that subcommand's module only, and none of them imports torch, Lightning or torchmetrics at "
             "top level (`tests/cli/test_startup.py` checks both), so a subcommand's time is the interpreter, "
             "numpy and the light imports of its module (h5py, faiss) plus argparse. A miss here means a module "
             "started importing torch at top level again.\n")
    report("cli", "h. CLI start-up", body, not args.no_write)


if __name__ == "__main__":
    main()
