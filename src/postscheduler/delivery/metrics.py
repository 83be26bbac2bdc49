"""``run --metrics HOST:PORT``: Prometheus metrics and ``/healthz`` for whoever runs the daemon.

Served by ``prometheus_client``'s WSGI app on a thread of its own, so a slow scraper never
touches the scheduler loop. Deliveries by state and account are read from the ledger at
scrape time (one GROUP BY), so they are right whichever process changed them; the rest are
counted in this process as things happen.

``/healthz`` answers 200 only while the scheduler loop is alive (its heartbeat is recent) and
the ledger takes writes; otherwise 503 with the reason, for systemd's watchdog, Docker's
HEALTHCHECK or a load balancer.
"""

from __future__ import annotations

import datetime as dt
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..errors import PostschedulerError
from ..ledger import DeliveryState, Ledger

HEARTBEAT_STALE = 10.0  # seconds without a heartbeat: the loop is stuck or gone
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LATENESS_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)


class _LedgerCollector(Collector):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "postscheduler_deliveries",
            "Deliveries in the ledger, by state and account.",
            labels=["state", "account"],
        )
        counts = self.ledger.counts_by_account()
        accounts = sorted({account for account, _ in counts})
        for account in accounts:
            for state in DeliveryState:
                family.add_metric([state.value, account], counts.get((account, state), 0))
        yield family


class Metrics:
    """What the engine, the alerter and the daemon report; one per daemon."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.published = Counter(
            "postscheduler_published", "Deliveries published.", ["platform", "account"], registry=r
        )
        self.outcomes = Counter(
            "postscheduler_attempts",
            "Publish attempts by outcome: published, retry, failed, unconfirmed.",
            ["platform", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "postscheduler_publish_seconds",
            "How long one publish took (the platform's API, uploads included).",
            ["platform"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lateness = Histogram(
            "postscheduler_lateness_seconds",
            "How long after its due time a delivery was published.",
            ["platform"],
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.alerts = Counter(
            "postscheduler_alert_messages",
            "Alert messages by channel and outcome (sent, failed).",
            ["channel", "outcome"],
            registry=r,
        )
        self.reloads = Counter("postscheduler_reloads", "Reloads of the posts.", registry=r)
        self.last_reload = Gauge(
            "postscheduler_last_reload_timestamp_seconds",
            "When the posts were last read (Unix time).",
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "postscheduler_heartbeat_age_seconds",
            "Seconds since the scheduler loop last showed it is alive.",
            registry=r,
        )
        self.heartbeat_age.set_function(self.since_heartbeat)
        self._heartbeat = time.monotonic()

    def watch_ledger(self, ledger: Ledger) -> None:
        self.registry.register(_LedgerCollector(ledger))

    # --- what happened ----------------------------------------------------------------------

    def beat(self) -> None:
        self._heartbeat = time.monotonic()

    def since_heartbeat(self) -> float:
        return time.monotonic() - self._heartbeat

    def attempt(
        self,
        platform: str,
        account: str,
        outcome: str,
        seconds: float,
        lateness: dt.timedelta | None = None,
    ) -> None:
        self.outcomes.labels(platform, outcome).inc()
        self.latency.labels(platform).observe(seconds)
        if outcome == "published":
            self.published.labels(platform, account).inc()
            if lateness is not None:
                self.lateness.labels(platform).observe(max(lateness.total_seconds(), 0.0))

    def alert(self, channel: str, sent: bool) -> None:
        self.alerts.labels(channel, "sent" if sent else "failed").inc()

    def reloaded(self) -> None:
        self.reloads.inc()
        self.last_reload.set(time.time())


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every 15 s is not news


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


Health = Callable[[], str | None]  # None: healthy; else why not


def wsgi_app(metrics: Metrics, health: Health) -> Any:
    exposition = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            problem = health()
            status = "200 OK" if problem is None else "503 Service Unavailable"
            body = (problem or "ok").encode() + b"\n"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [body]
        return exposition(environ, start_response)  # type: ignore[no-any-return]

    return app


class MetricsServer:
    """The HTTP endpoint, on a thread; ``close()`` stops it."""

    def __init__(self, address: str, metrics: Metrics, health: Health) -> None:
        host, port = parse_address(address)
        try:
            self.server = make_server(
                host,
                port,
                wsgi_app(metrics, health),
                server_class=_ThreadingServer,
                handler_class=_Quiet,
            )
        except OSError as exc:
            raise PostschedulerError(
                f"--metrics {address}: cannot listen there ({exc.strerror or exc}): choose "
                "another port, or stop what holds it"
            ) from None
        self.address = f"{host}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics")
        self.thread.daemon = True
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; ``:PORT`` is 127.0.0.1): where to listen."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise PostschedulerError(
            f"--metrics {address!r}: give HOST:PORT, e.g. 127.0.0.1:9464 (Prometheus' "
            "convention; keep it on loopback or a private network: it is not authenticated)"
        )
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)
