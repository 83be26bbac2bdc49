"""A loopback HTTP endpoint for the daemon benchmarks: answers every POST with 200 after a
fixed latency and records when each request arrived.

    python bench/fake_api.py PORT_FILE RECORD_FILE [--latency 0.2]

Writes the port it listens on to PORT_FILE; on SIGTERM writes one JSON line per request
(arrival time, idempotency key, the payload's due_at) to RECORD_FILE. Keep-alive HTTP/1.1
on raw asyncio streams, so the server is never the bottleneck being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from pathlib import Path


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port_file", type=Path)
    parser.add_argument("record_file", type=Path)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    records: list[dict[str, object]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.time()
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                payload = json.loads(body) if body else {}
                records.append(
                    {
                        "arrived": arrived,
                        "key": headers.get("idempotency-key"),
                        "due_at": payload.get("due_at"),
                    }
                )
                if args.latency:
                    await asyncio.sleep(args.latency)
                answer = b'{"id": "ok"}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                    + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    args.port_file.write_text(str(port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()
    args.record_file.write_text("".join(json.dumps(r) + "\n" for r in records))


if __name__ == "__main__":
    asyncio.run(main())
