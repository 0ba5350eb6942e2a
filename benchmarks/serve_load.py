"""Load check of `context-forcing serve`: N concurrent live sessions on loopback for a bounded time.

Starts the server as its own process (so its memory is its own), opens N WebSocket sessions that stream for
--seconds, one more connection past the limit (must be refused), then --disconnects clients that drop their
connection mid-stream without a closing handshake. Prints one JSON document on stdout (progress on stderr):
latent frames per second per session, chunk latency, the server's resident memory before / after each phase,
and whether anything was left behind (sessions still active, threads or memory growing over the
disconnect cycles).
    .venv/bin/python benchmarks/serve_load.py --sessions 2 --seconds 20
Default: the shipped panworld student, as fast as the machine goes (--no-pace), one torch thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time

import aiohttp

PROMPT = {"palette": 1, "shape": 2, "colour": 3, "density": 0}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def status(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(f"{url}/status") as response:
        return await response.json()


async def wait_ready(url: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with status {server.returncode}")
            try:
                await status(http, url)
                return
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {timeout} s")


async def stream_session(url: str, seconds: float, seed: int) -> dict:
    """One live session: start, steer (a move and a prompt switch on the way), count frames for `seconds`."""
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws") as ws:
        assert (await ws.receive_json())["type"] == "hello"
        await ws.send_json({"type": "start", "seed": seed, "prefill_seconds": 3})
        while (await ws.receive_json())["type"] != "opening":
            pass
        tic, frames, chunks, latencies, errors = time.monotonic(), 0, 0, [], 0
        while time.monotonic() - tic < seconds:
            message = await asyncio.wait_for(ws.receive_json(), timeout=60)
            if message["type"] == "error":
                errors += 1
            if message["type"] != "chunk":
                continue
            frames += len(message["frames"])
            chunks += 1
            latencies.append(message["chunk_ms"])
            if chunks == 2:
                await ws.send_json({"type": "move", "move": 1})
            if chunks == 6:
                await ws.send_json({"type": "prompt", "prompt": PROMPT, "policy": "recache"})
        wall = time.monotonic() - tic
        return {
            "latent_frames": frames,
            "wall_s": round(wall, 2),
            "fps": round(frames / wall, 2),
            "chunk_ms_median": round(statistics.median(latencies), 1) if latencies else None,
            "errors": errors,
        }


async def refused(url: str) -> dict:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws") as ws:
        message = await ws.receive_json()
        await ws.receive()
        return {"message": message, "close_code": ws.close_code}


async def drop_mid_stream(url: str) -> None:
    """A client that vanishes: start, take two chunks, then cut the TCP connection (no closing handshake)."""
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"{url}/ws")
    await ws.receive_json()
    await ws.send_json({"type": "start", "seed": 7})
    chunks = 0
    while chunks < 2:
        chunks += (await ws.receive_json())["type"] == "chunk"
    connector = http.connector
    connector._close()  # abort every transport: like a killed browser
    await http.close()


async def wait_idle(http: aiohttp.ClientSession, url: str, timeout: float = 30.0) -> tuple[dict, float]:
    tic = time.monotonic()
    while (s := await status(http, url))["active_sessions"] and time.monotonic() - tic < timeout:
        await asyncio.sleep(0.05)
    return s, time.monotonic() - tic


async def measure(url: str, args: argparse.Namespace) -> dict:
    async with aiohttp.ClientSession() as http:
        idle = await status(http, url)
        print(f"{args.sessions} sessions for {args.seconds} s ...", file=sys.stderr)
        sessions = [
            asyncio.create_task(stream_session(url, args.seconds, 1_000_000 + i))
            for i in range(args.sessions)
        ]
        await asyncio.sleep(3)
        refusal = await refused(url)
        during = await status(http, url)
        results = await asyncio.gather(*sessions)
        after_sessions, _ = await wait_idle(http, url)
        print(f"{args.disconnects} clients dropping mid-stream ...", file=sys.stderr)
        cycles = []
        for _ in range(args.disconnects):
            await drop_mid_stream(url)
            s, freed_s = await wait_idle(http, url)
            cycles.append(
                {
                    "active_after": s["active_sessions"],
                    "freed_in_s": round(freed_s, 2),
                    "rss_mb": s["rss_mb"],
                    "threads": s["threads_alive"],
                }
            )
        final = await status(http, url)
    fps = [r["fps"] for r in results]
    return {
        "sessions": args.sessions,
        "seconds": args.seconds,
        "preset": args.preset,
        "pace": args.pace,
        "threads": args.threads,
        "per_session": results,
        "fps_per_session_mean": round(statistics.mean(fps), 2),
        "fps_total": round(sum(fps), 2),
        "refused_past_limit": refusal,
        "server_rss_mb": {
            "idle": idle["rss_mb"],
            "during": during["rss_mb"],
            "after_sessions": after_sessions["rss_mb"],
            "after_disconnects": final["rss_mb"],
            "peak": final["peak_rss_mb"],
        },
        "active_during": during["active_sessions"],
        "disconnect_cycles": cycles,
        "left_behind": {
            "active_sessions": final["active_sessions"],
            "threads_growth": cycles[-1]["threads"] - cycles[0]["threads"] if cycles else 0,
            "rss_growth_mb_over_cycles": round(cycles[-1]["rss_mb"] - cycles[0]["rss_mb"], 1)
            if cycles
            else 0.0,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2, help="concurrent sessions (= the server's limit)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each session streams")
    parser.add_argument(
        "--disconnects", type=int, default=5, help="clients that drop mid-stream, one after another"
    )
    parser.add_argument("--preset", default="panworld")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    parser.add_argument("--pace", action="store_true", help="real-time pacing (default: as fast as possible)")
    args = parser.parse_args()
    if args.sessions < 1 or args.seconds <= 0 or args.disconnects < 1:
        parser.error("--sessions and --disconnects must be >= 1 and --seconds > 0")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "context_forcing",
        "serve",
        "--preset",
        args.preset,
        "--port",
        str(port),
        "--max-sessions",
        str(args.sessions),
        "--threads",
        str(args.threads),
    ]
    if args.preset != "panworld":
        command.append("--random-weights")
    if not args.pace:
        command.append("--no-pace")
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_ready(url, server))
        report = asyncio.run(measure(url, args))
    finally:
        server.terminate()
        server.wait(timeout=30)
    report["command"] = " ".join(["benchmarks/serve_load.py", *sys.argv[1:]])
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
