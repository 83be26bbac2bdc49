"""Validate N generated post files; compare with bare libyaml parsing of the same files.

    python bench/validate_many.py [--files 10000] [--repeat 5] [--accounts outbox]
    python bench/validate_many.py --process [--files 2000] [--repeat 11] [--accounts ...]

Prints files/s for `validate` (load + rules, as the CLI runs it, minus printing) and for
`yaml.load(..., CSafeLoader)` on the same files, and the ratio of the medians. Times are
CPU seconds of this process (time.process_time): on a shared machine they vary far less
than wall-clock time, and both sides are single-threaded and CPU-bound.

With --process, each side is a whole fresh interpreter, as a CI check or an organiser runs
it: `python -m postscheduler validate` (start-up, imports, printing included) against a
bare script that imports yaml and parses the same files; rounds alternate them, and the
figure is the median of the rounds' ratios, in the children's CPU seconds and wall time.
Each round runs validate three times: cold (nothing kept from before), warm (with the
parses and checks the cold run kept in .postscheduler/, as an organiser's next command
finds them) and clone (the same, with every post file written anew: new stamps, the same
bytes, as a CI job that restores .postscheduler/ into a fresh clone finds them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from postscheduler.config import Settings, load_settings
from postscheduler.errors import TimeError
from postscheduler.posts.rules import validate
from postscheduler.posts.times import localize

CONFIG = """\
timezone: Europe/London
posts_dir: posts
accounts:
  outbox: {platform: outbox}
  mastodon: {platform: mastodon, instance: "https://m.example", token: "${T}"}
  bluesky: {platform: bluesky, handle: a.example, app_password: "${P}"}
  x:
    platform: x
    consumer_key: ${A}
    consumer_secret: ${B}
    access_token: ${C}
    access_token_secret: ${D}
defaults:
  accounts: [ACCOUNTS]
"""

WORDS = ["solidarity", "democracy", "repression", "elections", "march", "strike", "speakers"]
WORDS += ["campaign", "statement", "support", "justice", "workers", "union", "rally", "meeting"]
WORDS += ["community", "rights", "🧵", "✊🏽", "Perú"]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def generate(root: Path, count: int, accounts: str, seed: int = 1) -> None:
    rng = random.Random(seed)
    (root / "scheduler.yaml").write_text(CONFIG.replace("ACCOUNTS", accounts))
    posts = root / "posts"
    posts.mkdir()
    zone = ZoneInfo("Europe/London")
    start = dt.datetime(2027, 1, 1, 9, 0, tzinfo=dt.UTC)
    for i in range(count):
        instant = (start + dt.timedelta(minutes=37 * i)).astimezone(zone)
        try:  # naive wall-clock times, as people write them, except where DST makes them
            localize(instant.replace(tzinfo=None), zone)  # ambiguous: those get an offset
            at = instant.strftime("%Y-%m-%d %H:%M")
        except TimeError:
            at = instant.isoformat(timespec="minutes")
        kind = i % 4
        if kind == 0:
            body = f"text: {_text(rng, 20)}\nlink: https://example.org/news/{i}\n"
        elif kind == 1:
            body = (
                f"quote:\n  text: {_text(rng, 18)}\n  by: Speaker {i}\n  role: organiser\n"
                f"link: https://example.org/news/{i}\n"
            )
        elif kind == 2:
            body = f"text: {_text(rng, 10)}\nthread:\n  - {_text(rng, 15)}\n  - {_text(rng, 15)}\n"
        else:
            body = (
                f"text: {_text(rng, 25)}\ncontent_warning: violence\nlanguage: en\n"
                f"overrides:\n  bluesky: {{text: {_text(rng, 8)}}}\n"
            )
        (posts / f"post-{i:05d}.yaml").write_text(f"id: post-{i:05d}\nat: {at}\n{body}")


def bench_parse(paths: list[Path]) -> float:
    t0 = time.process_time()
    for path in paths:
        yaml.load(path.read_bytes().decode("utf-8"), Loader=yaml.CSafeLoader)
    return time.process_time() - t0


def bench_validate(settings: Settings, paths: list[Path]) -> float:
    t0 = time.process_time()
    catalog = validate(settings, paths, now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    elapsed = time.process_time() - t0
    errors = [f for f in catalog.findings if f.is_error]
    if errors or len(catalog.posts) != len(paths):
        raise SystemExit(f"generated posts have {len(errors)} errors: {errors[:3]}")
    return elapsed


BARE_PARSE = """\
import sys
from pathlib import Path
import yaml
for path in sorted(Path("posts").glob("*.yaml")):
    yaml.load(path.read_bytes().decode("utf-8"), Loader=yaml.CSafeLoader)
"""


KEPT = Path(".postscheduler") / "parsed-posts.cache"  # what validate keeps for the next run


def bench_processes(root: Path, repeat: int) -> dict[str, list[float]]:
    from cli_startup import ENV, wall  # bench/ is this script's folder: on sys.path

    # Secrets the generated accounts name, so the configuration loads as in real use.
    env = dict(ENV, T="t", P="p", A="a", B="b", C="c", D="d")
    validate_cmd = [sys.executable, "-m", "postscheduler", "validate"]
    parse_cmd = [sys.executable, "-c", BARE_PARSE]
    wall(validate_cmd, root, env)  # warms the page cache and the .pyc files
    wall(parse_cmd, root, env)
    times: dict[str, list[float]] = {}
    for _ in range(repeat):
        # First run: nothing kept from before, as in a fresh CI checkout. It keeps the
        # parses and checks; the second run, as an organiser's next command, uses them.
        # A third, "clone", finds them with every file written anew (new inodes and
        # times, as a CI job restoring .postscheduler/ into a fresh clone).
        (root / KEPT).unlink(missing_ok=True)
        for side in ("cold", "warm", "clone", "p"):
            if side == "clone":
                for path in (root / "posts").iterdir():
                    data = path.read_bytes()
                    path.unlink()
                    path.write_bytes(data)
            elapsed, cpu = wall(parse_cmd if side == "p" else validate_cmd, root, env)
            times.setdefault(f"{side}_cpu", []).append(cpu)
            times.setdefault(f"{side}_wall", []).append(elapsed)
        if not (root / KEPT).is_file():
            raise SystemExit(f"validate kept nothing in {KEPT}: the warm runs were cold")
    return times


def report_processes(args: argparse.Namespace, times: dict[str, list[float]]) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"python {sys.version.split()[0]}, {args.files} files, accounts [{args.accounts}], "
        f"whole processes, median of {args.repeat} alternating rounds"
    )
    sides = {
        "cold": "nothing kept",
        "warm": "kept by the run before",
        "clone": "kept, every file written anew",
    }
    rows = {"bare libyaml parse": "p"} | {f"validate, {what}": side for side, what in sides.items()}
    for label, side in rows.items():
        cpu, elapsed = med[f"{side}_cpu"], med[f"{side}_wall"]
        print(f"{label:<40}: {cpu:6.3f} s CPU  {elapsed:6.3f} s wall")
    for side in sides:
        for unit in ("cpu", "wall"):
            ratios = [
                v / p for v, p in zip(times[f"{side}_{unit}"], times[f"p_{unit}"], strict=True)
            ]
            q1, q2, q3 = statistics.quantiles(ratios, n=4)
            label = f"ratio {side} ({unit})"
            print(f"{label:<40}: {q2:.2f}x (quartiles {q1:.2f}-{q3:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=1000, help="files per timed round")
    parser.add_argument("--accounts", default="outbox", help="comma-separated target accounts")
    parser.add_argument("--process", action="store_true", help="time whole fresh processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, args.files, args.accounts)
        if args.process:
            report_processes(args, bench_processes(root, args.repeat))
            return
        settings = load_settings(root / "scheduler.yaml", environ={})
        paths = sorted((root / "posts").glob("*.yaml"))
        chunks = [paths[i : i + args.chunk] for i in range(0, len(paths), args.chunk)]
        # An untimed pass warms the page cache, imports and lazily compiled expressions.
        bench_parse(paths)
        bench_validate(settings, paths)
        # Whole-set timings, as a user would run it...
        parse_all = [bench_parse(paths) for _ in range(args.repeat)]
        validate_all = [bench_validate(settings, paths) for _ in range(args.repeat)]
        # ...and short interleaved rounds: a noisy neighbour slows both sides of a round
        # alike, so the median of the rounds' ratios is the steadier figure.
        ratios = []
        for _ in range(args.repeat):
            for chunk in chunks:
                ratios.append(bench_validate(settings, chunk) / bench_parse(chunk))
    p, v = statistics.median(parse_all), statistics.median(validate_all)
    q1, q2, q3 = statistics.quantiles(ratios, n=4)
    print(
        f"python {sys.version.split()[0]}, {args.files} files, accounts [{args.accounts}], "
        f"median of {args.repeat} runs, CPU seconds"
    )
    print(f"libyaml parse only     : {p:6.3f} s  {args.files / p:7.0f} files/s")
    print(f"postscheduler validate : {v:6.3f} s  {args.files / v:7.0f} files/s")
    print(
        f"ratio validate / parse : {q2:.2f}x median of {len(ratios)} rounds of {args.chunk} "
        f"files (quartiles {q1:.2f}-{q3:.2f})"
    )


if __name__ == "__main__":
    main()
