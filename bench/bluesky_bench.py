"""Publishing the example campaign to the real Bluesky PDS on 127.0.0.1.

    python bench/bluesky_bench.py [--rounds 7]

Each round publishes the example campaign of posts/ (10 deliveries: an image post, five link
posts with cards, a 4-part thread) with `run --once` semantics into a fresh project: login,
validation, ledger writes (fsync), card fetches from a loopback site, image checks, facets.
The XRPC requests it made are recorded, then replayed bare with httpx, one after another,
as fresh records (new record keys): the raw cost of talking to the PDS. The ratio of the two
is postscheduler's overhead. Needs Node.js; installs the PDS like the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.bluesky_pds import PDS, running  # noqa: E402
from tests.publishers.test_bluesky_pds import _campaign, serve_site  # noqa: E402

from postscheduler.delivery.daemon import run_once  # noqa: E402
from postscheduler.publishers.bluesky import make_tid  # noqa: E402

Recorded = tuple[str, str, dict[str, str], bytes]


def _recorder(pds_url: str, log: list[Recorded]) -> Any:
    original = httpx.AsyncClient.send

    async def send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
        if str(request.url).startswith(pds_url):
            headers = {
                k: v for k, v in request.headers.items() if k in ("authorization", "content-type")
            }
            log.append((request.method, str(request.url), headers, request.content))
        return await original(self, request, **kwargs)

    return original, send


async def _replay(log: list[Recorded]) -> float:
    async with httpx.AsyncClient(timeout=30) as http:
        started = time.perf_counter()
        for method, url, headers, content in log:
            if url.endswith("com.atproto.repo.putRecord"):
                body = json.loads(content)
                body["rkey"] = make_tid(time.time_ns() // 1000, 1)
                body["record"]["createdAt"] = dt.datetime.now(dt.UTC).isoformat()[:23] + "Z"
                content = json.dumps(body).encode()
            answer = await http.request(method, url, headers=headers, content=content)
            answer.raise_for_status()
        return time.perf_counter() - started


def one_round(pds: PDS, site_url: str, workdir: Path) -> tuple[float, float, int, int]:
    campaign = _campaign(workdir, pds, site_url)
    log: list[Recorded] = []
    original, recording = _recorder(pds.url, log)
    httpx.AsyncClient.send = recording  # type: ignore[method-assign]
    try:
        when = dt.datetime(2027, 2, 1, 12, 0, tzinfo=dt.UTC)
        started = time.perf_counter()
        report = asyncio.run(run_once(campaign.settings(), clock=lambda: when))
        full = time.perf_counter() - started
    finally:
        httpx.AsyncClient.send = original  # type: ignore[method-assign]
    published = report.counts.get("published", 0)
    raw = asyncio.run(_replay(log))
    return full, raw, published, len(log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    fulls, raws = [], []
    with serve_site() as site_url, running() as pds, tempfile.TemporaryDirectory() as tmp:
        one_round(pds, site_url, Path(tmp) / "warm-up")
        for i in range(args.rounds):
            full, raw, published, calls = one_round(pds, site_url, Path(tmp) / f"r{i}")
            fulls.append(full)
            raws.append(raw)
            print(
                f"round {i + 1}: {published} published, {calls} XRPC calls; "
                f"postscheduler {full * 1000:.0f} ms, bare calls {raw * 1000:.0f} ms"
            )
    full_m, raw_m = statistics.median(fulls), statistics.median(raws)
    print(
        f"median of {args.rounds}: campaign {full_m * 1000:.0f} ms, bare XRPC {raw_m * 1000:.0f} "
        f"ms, ratio {full_m / raw_m:.2f}x, overhead {(full_m - raw_m) * 1000 / published:.0f} ms "
        "per delivery"
    )


if __name__ == "__main__":
    main()
