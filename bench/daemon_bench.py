"""Daemon benchmarks against a loopback fake API (bench/fake_api.py).

    python bench/daemon_bench.py lateness   [--deliveries 10000] [--accounts 50] [--rate 100]
                                            [--alerts none|dead] [--failing 10]
    python bench/daemon_bench.py fanout     [--accounts 100] [--latency 0.2] [--daemons 1]
                                            [--ledger postgresql://...]
    python bench/daemon_bench.py memory     [--deliveries 10000]
    python bench/daemon_bench.py reschedule [--files 1000] [--edits 15]

lateness: posts due at a steady rate, each to one of the accounts (signed webhooks); the
  fake API records when each arrives; lateness = arrival - due. With --alerts dead, every
  --failing-th post goes to an account whose server refuses it (one attempt: failed, an
  alert each), and alerts go by e-mail to an SMTP server that accepts the connection and
  never answers: the alerts pile up and time out while the other posts are measured.
fanout: one post to N accounts at one instant, the API answering after --latency; the time
  from the due time until the last arrival, against one request's latency. With --daemons
  3, three daemons (each its own checkout) share one PostgreSQL ledger (--ledger, or a
  server started here from the installed binaries, as the tests do).
memory: the daemon's resident memory with N deliveries queued for later (from /proc).
reschedule: with N post files loaded, edit one file to be due at once, many times; the time
  from writing the file to the delivery's arrival (an upper bound of edit-to-reschedule).
startup: with N post files, the time from starting `postscheduler run` to "daemon started"
  (the posts read, planned and scheduled): the first start, which plans every delivery into
  an empty ledger, then restarts on the planned ledger, as after a deploy or a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent


def config(url: str, accounts: int, retries: int = 5, extra: str = "") -> str:
    lines = [
        "timezone: UTC",
        "posts_dir: posts",
        "ledger: state/ledger.db",
        "accounts:",
    ]
    lines += [
        f'  a{i}: {{platform: webhook, url: "{url}", secret: "${{BENCH_SECRET}}"}}'
        for i in range(accounts)
    ]
    lines += [
        "defaults: {accounts: [a0]}",
        "publishing:",
        "  late_grace: 1h",
        f"  retry: {{attempts: {retries}, first_delay: 1s, max_delay: 5s}}",
    ]
    return "\n".join(lines) + "\n" + extra


class Blackhole:
    """An SMTP server gone silent: it accepts connections and never says a word."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(100)
        self.port = self.sock.getsockname()[1]
        self.held: list[object] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept())
            except OSError:
                return


def dead_alerts(port: int) -> str:
    return (
        '  bad: {platform: webhook, url: "http://127.0.0.1:9/refused",'
        ' secret: "${BENCH_SECRET}"}\n'
        "alerts:\n"
        f"  smtp: {{host: 127.0.0.1, port: {port}, starttls: false, from: a@bench.test, "
        "to: [b@bench.test], timeout: 30s}\n"
        "  gather: 1s\n"
    )


class Api:
    def __init__(self, root: Path, latency: float = 0.0) -> None:
        self.port_file = root / "api.port"
        self.record_file = root / "api.records"
        api = [sys.executable, str(HERE / "fake_api.py"), str(self.port_file)]
        self.proc = subprocess.Popen([*api, str(self.record_file), "--latency", str(latency)])
        while not self.port_file.exists() or not self.port_file.read_text():
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port_file.read_text()}/hook"

    def stop(self) -> list[dict[str, object]]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        return [json.loads(line) for line in self.record_file.read_text().splitlines()]


class Daemon:
    def __init__(self, root: Path) -> None:
        env = {**os.environ, "BENCH_SECRET": "bench-secret"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.log = (root / "daemon.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "postscheduler", "run", "-c", str(root / "scheduler.yaml")],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.root = root

    def wait_for_log(self, text: str, timeout: float = 300, poll: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in (self.root / "daemon.log").read_text():
                return
            time.sleep(poll)
        raise TimeoutError(f"daemon did not log {text!r}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self.log.close()


def write_posts(root: Path, posts: list[tuple[str, dt.datetime, str]]) -> None:
    folder = root / "posts"
    folder.mkdir(parents=True, exist_ok=True)
    for post_id, due, account in posts:
        (folder / f"{post_id}.yaml").write_text(
            f"id: {post_id}\nat: {due.isoformat()}\ntext: Benchmark post {post_id}.\n"
            f"accounts: [{account}]\n"
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def lateness(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        api = Api(root)
        text = config(api.url, args.accounts, retries=1)
        if args.alerts == "dead":
            hole = Blackhole()
            head, tail = text.split("defaults:", 1)
            alerts = dead_alerts(hole.port)
            bad, alerts = alerts.split("alerts:", 1)
            text = head + bad + "defaults:" + tail + "alerts:" + alerts
        (root / "scheduler.yaml").write_text(text)
        start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=args.lead)
        step = dt.timedelta(seconds=1 / args.rate)

        def account(i: int) -> str:
            failing = args.alerts == "dead" and i % args.failing == 0
            return "bad" if failing else f"a{i % args.accounts}"

        write_posts(
            root,
            [(f"p{i:05d}", start + i * step, account(i)) for i in range(args.deliveries)],
        )
        daemon = Daemon(root)
        daemon.wait_for_log("daemon started")
        ready = dt.datetime.now(dt.UTC)
        end = start + args.deliveries * step
        while dt.datetime.now(dt.UTC) < end + dt.timedelta(seconds=5):
            time.sleep(0.5)
        daemon.stop()
        records = api.stop()
    late = [
        r["arrived"] - dt.datetime.fromisoformat(str(r["due_at"])).timestamp()
        for r in records  # type: ignore[operator]
    ]
    lead = (ready - start).total_seconds()
    failing = args.deliveries // args.failing if args.alerts == "dead" else 0
    print(
        f"{len(records)} of {args.deliveries - failing} deliveries over {args.accounts} "
        f"accounts, {args.rate}/s; daemon ready {lead:+.1f} s from the first due time"
        + (f"; {failing} failing, alerts to a dead SMTP server" if failing else "")
    )
    p50, p99 = percentile(late, 0.5) * 1000, percentile(late, 0.99) * 1000
    print(f"lateness: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(late) * 1000:.1f} ms")


@contextlib.contextmanager
def fanout_ledger(args: argparse.Namespace) -> Iterator[Callable[[], str]]:
    """Where the fan-out's daemons keep their ledger: each run's own SQLite file (one
    daemon), or a fresh database on a PostgreSQL server (--ledger, or one started here from
    the installed server binaries, as the tests do)."""
    if args.daemons == 1 and args.ledger is None:
        yield lambda: "state/ledger.db"
        return
    if args.ledger is not None:
        yield lambda: args.ledger
        return
    sys.path.insert(0, str(HERE.parent))
    from tests.postgres_server import running

    with running() as server:
        yield server.new_database


def fanout(args: argparse.Namespace) -> None:
    results = []
    with fanout_ledger(args) as new_ledger:
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                results.append(_fanout_once(Path(tmp), args, new_ledger()))
    med = statistics.median(results)
    print(
        f"{args.accounts} accounts due at once, {args.daemons} daemon(s), API latency "
        f"{args.latency * 1000:.0f} ms: all sent and answered after median {med * 1000:.0f} ms "
        "(runs: "
        + ", ".join(f"{r * 1000:.0f}" for r in sorted(results))
        + f"); ratio to one request {med / args.latency:.2f}x"
    )


def _fanout_once(root: Path, args: argparse.Namespace, ledger: str) -> float:
    api = Api(root, latency=args.latency)
    accounts = ", ".join(f"a{i}" for i in range(args.accounts))
    daemons = []
    for n in range(args.daemons):  # each daemon its own checkout, as on its own machine
        checkout = root / f"daemon{n}"
        (checkout / "posts").mkdir(parents=True)
        text = config(api.url, args.accounts).replace("state/ledger.db", ledger)
        (checkout / "scheduler.yaml").write_text(text)
        daemons.append(Daemon(checkout))
    for daemon in daemons:
        daemon.wait_for_log("daemon started")
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    for daemon in daemons:
        (daemon.root / "posts" / "all.yaml").write_text(
            f"id: all\nat: {due.isoformat()}\ntext: Everyone at once.\naccounts: [{accounts}]\n"
        )
    time.sleep(3 + args.latency + 4)
    for daemon in daemons:
        daemon.stop()
    records = api.stop()
    logs = "".join((d.root / "daemon.log").read_text() for d in daemons)
    assert len(records) == args.accounts, f"{len(records)} arrived; daemon logs:\n{logs}"
    arrived = sorted(float(r["arrived"]) - due.timestamp() for r in records)
    last = arrived[-1] + args.latency  # answered
    if args.verbose:
        first, med = arrived[0] * 1000, statistics.median(arrived) * 1000
        print(
            f"arrivals after the due time: first {first:.0f} ms, median {med:.0f} ms, "
            f"last {arrived[-1] * 1000:.0f} ms",
            file=sys.stderr,
        )
    if last > 5:  # a run far off the others: show why, it is gone after
        print(f"slow run ({last:.1f} s); daemon logs:\n{logs}", file=sys.stderr)
    return last


def memory(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "scheduler.yaml").write_text(config("http://127.0.0.1:9/never", args.accounts))
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        write_posts(
            root,
            [
                (f"p{i:05d}", later + dt.timedelta(minutes=i), f"a{i % args.accounts}")
                for i in range(args.deliveries)
            ],
        )
        daemon = Daemon(root)
        daemon.wait_for_log("daemon started")
        time.sleep(1)
        rss = daemon.rss_mb()
        daemon.stop()
    print(f"daemon RSS with {args.deliveries} deliveries queued: {rss:.0f} MB")


def reschedule(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        api = Api(root)
        (root / "scheduler.yaml").write_text(config(api.url, 1))
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        write_posts(root, [(f"p{i:05d}", later, "a0") for i in range(args.files)])
        daemon = Daemon(root)
        daemon.wait_for_log("daemon started")
        times = []
        for n in range(args.edits):
            post = root / "posts" / f"p{n:05d}.yaml"
            now = dt.datetime.now(dt.UTC)
            written = time.time()
            post.write_text(
                f"id: p{n:05d}\nat: {now.isoformat()}\ntext: Edited {n}.\naccounts: [a0]\n"
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if f"published p{n:05d}" in (root / "daemon.log").read_text():
                    break
                time.sleep(0.01)
            times.append(time.time() - written)
        daemon.stop()
        api.stop()
    q1, q2, q3 = statistics.quantiles(times, n=4)
    print(
        f"{args.files} post files loaded: edit to published, median {q2 * 1000:.0f} ms "
        f"(quartiles {q1 * 1000:.0f}-{q3 * 1000:.0f}, max {max(times) * 1000:.0f}) "
        f"over {args.edits} edits"
    )


def startup(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "scheduler.yaml").write_text(config("http://127.0.0.1:9/unused", 1))
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        write_posts(root, [(f"p{i:05d}", later, "a0") for i in range(args.files)])
        times = []
        for _ in range(args.restarts + 1):
            began = time.monotonic()
            daemon = Daemon(root)
            daemon.wait_for_log("daemon started", poll=0.01)
            times.append(time.monotonic() - began)
            daemon.stop()
    first, *again = times
    q1, q2, q3 = statistics.quantiles(again, n=4) if len(again) > 1 else (again * 3)
    print(
        f"{args.files} post files: first start {first:.2f} s; restarts median {q2:.2f} s "
        f"(quartiles {q1:.2f}-{q3:.2f}) over {len(again)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("lateness")
    p.add_argument("--deliveries", type=int, default=10_000)
    p.add_argument("--accounts", type=int, default=50)
    p.add_argument("--rate", type=float, default=100.0, help="deliveries due per second")
    p.add_argument("--lead", type=float, default=30.0, help="seconds before the first is due")
    p.add_argument("--alerts", choices=["none", "dead"], default="none")
    p.add_argument("--failing", type=int, default=10, help="with --alerts dead: 1 in N fails")
    p = sub.add_parser("fanout")
    p.add_argument("--accounts", type=int, default=100)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--daemons", type=int, default=1, help="sharing one PostgreSQL ledger")
    p.add_argument("--ledger", help="a postgresql:// URL (default: a server started here)")
    p.add_argument("--verbose", action="store_true", help="each run's arrivals")
    p = sub.add_parser("memory")
    p.add_argument("--deliveries", type=int, default=10_000)
    p.add_argument("--accounts", type=int, default=50)
    p = sub.add_parser("startup")
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--restarts", type=int, default=5)
    p = sub.add_parser("reschedule")
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--edits", type=int, default=15)
    args = parser.parse_args()
    which = {"lateness": lateness, "fanout": fanout, "memory": memory}
    which.update(reschedule=reschedule, startup=startup)
    which[args.which](args)


if __name__ == "__main__":
    main()
