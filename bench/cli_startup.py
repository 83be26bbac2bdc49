"""Wall time of the organiser commands on the example posts, and what they import.

    python bench/cli_startup.py [--runs 21]

Runs each command as a fresh process (as an organiser types it) and prints the median and
quartiles of the wall time next to a bare `python -c pass`, then the heaviest imports of
`postscheduler queue` from `python -X importtime`, and checks that httpx and apscheduler
are not among them.

    python bench/cli_startup.py --instructions

counts instructions instead, under valgrind's callgrind: slow (a minute), but the same count
on every run, where wall time on a shared machine varies by half. It compares `queue` with
the floor set by the stack itself: importing typer, pydantic (building one model), PyYAML
and Pillow.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "postscheduler queue": [sys.executable, "-m", "postscheduler", "queue"],
    "postscheduler validate": [sys.executable, "-m", "postscheduler", "validate"],
    "postscheduler preview peru-article": [
        sys.executable,
        "-m",
        "postscheduler",
        "preview",
        "peru-article",
    ],
}


# Some machines set PYTHONDONTWRITEBYTECODE, which makes every run recompile the project's
# modules; an installed package has its .pyc files, so measure it that way.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall(
    cmd: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        cmd,
        cwd=cwd,
        env=ENV if env is None else env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


FLOOR = (
    "import typer, typer._adapters, yaml\n"
    "from PIL import Image\n"
    "from pydantic import BaseModel\n"
    "class M(BaseModel):\n    x: int\n"
    "M(x=1)\n"
)


def instructions(cmd: list[str]) -> int:
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in result.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1])
    raise RuntimeError(result.stderr[-500:])


def count_instructions() -> None:
    wall(COMMANDS["postscheduler queue"])  # write .pyc files first
    rows = {
        "python -c pass": COMMANDS["python -c pass"],
        "stack floor (typer, pydantic, yaml, PIL)": [sys.executable, "-c", FLOOR],
        "postscheduler queue": COMMANDS["postscheduler queue"],
    }
    counts = {name: instructions(cmd) for name, cmd in rows.items()}
    for name, count in counts.items():
        print(f"  {name:42s} {count / 1e6:8.0f} M instructions")
    own = counts["postscheduler queue"] - counts["stack floor (typer, pydantic, yaml, PIL)"]
    print(f"  {'postscheduler queue above the floor':42s} {own / 1e6:8.0f} M instructions")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    args = parser.parse_args()
    if args.instructions:
        count_instructions()
        return
    for cmd in COMMANDS.values():
        wall(cmd)  # warm the page cache and .pyc files
    print(f"python {sys.version.split()[0]}, median of {args.runs} runs (quartiles)")
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, cmd in COMMANDS.items():  # interleaved, so drift hits every command alike
            times[name].append(wall(cmd))
    print(f"  {'command':36s} {'wall':>22s} {'CPU':>22s}")
    for name, samples in times.items():
        cells = []
        for which in (0, 1):
            q1, q2, q3 = statistics.quantiles([s[which] for s in samples], n=4)
            cells.append(f"{q2 * 1000:5.0f} ms ({q1 * 1000:3.0f}-{q3 * 1000:3.0f})")
        print(f"  {name:36s} {cells[0]:>22s} {cells[1]:>22s}")

    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "postscheduler", "queue"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    top: list[tuple[int, str]] = []
    names: set[str] = set()
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        names.add(name.strip())
        if not name.startswith("  "):  # one space: imported by the program, not a module
            top.append((int(cumulative), name.strip()))
    print("\nimports of `postscheduler queue`, top level, cumulative:")
    for cumulative, name in sorted(top, reverse=True)[:10]:
        print(f"  {cumulative / 1000:6.1f} ms  {name}")
    print(f"  {sum(c for c, _ in top) / 1000:6.1f} ms  all {len(names)} modules")
    heavy = sorted(n for n in names if n.split(".")[0] in {"httpx", "apscheduler", "twitter_text"})
    print(f"httpx / apscheduler / twitter_text imported: {heavy or 'none'}")


if __name__ == "__main__":
    main()
