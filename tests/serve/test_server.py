"""The server over real sockets: the page and its files, 4xx for anything else, the WebSocket session (frames,
memory, validated messages, prompt switches, camera), the concurrency limit, and sessions freed on close."""

from __future__ import annotations

import asyncio
import http.client
import time

import aiohttp
import pytest
from served import tiny_config

from context_forcing.serve.background import BackgroundServer

PROMPT = {"palette": 2, "shape": 1, "colour": 0, "density": 1}


@pytest.fixture
def config():
    return tiny_config()


async def _next(ws, kind, limit=40):
    """The next message of type `kind` (others skipped)."""
    for _ in range(limit):
        message = await asyncio.wait_for(ws.receive_json(), timeout=30)
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} message in {limit}")


async def _status_async(server):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/status") as response:
            return await response.json()


def _status(server):
    return asyncio.run(_status_async(server))


def _wait_idle(server, timeout=10.0):
    deadline = time.monotonic() + timeout
    while (status := _status(server))["active_sessions"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return status


def test_page_files_and_4xx_for_everything_else(config):
    async def check(url):
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/") as r:
                assert r.status == 200 and 'id="memory-slow"' in await r.text()
            for name in ("app.js", "style.css"):
                async with http.get(f"{url}/page/{name}") as r:
                    assert r.status == 200
            for path in ("/nothing", "/page/index.html", "/static/app.js", "/page/app.js/x"):
                async with http.get(url + path) as r:
                    assert 400 <= r.status < 500, (path, r.status)
            async with http.post(f"{url}/", data="x") as r:
                assert r.status == 405
            async with http.get(f"{url}/ws") as r:  # not an upgrade request
                assert 400 <= r.status < 500
            async with http.get(f"{url}/") as r:  # the server goes on
                assert r.status == 200

    with BackgroundServer(config) as server:
        # raw request targets, as sent (the client libraries would normalise these)
        for target in (
            "/page/..%2f..%2fpyproject.toml",
            "/page/%2e%2e%2fapp.py",
            "/page/../serve/app.py",
            "/../../../etc/passwd",
            "/page/..\\..\\app.py",
            "//etc/passwd",
            "/page/%00",
        ):
            connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
            connection.putrequest("GET", target, skip_accept_encoding=True)
            connection.endheaders()
            status = connection.getresponse().status
            connection.close()
            assert 400 <= status < 500, (target, status)
        asyncio.run(check(server.url))


def test_a_session_streams_frames_memory_and_obeys_the_page(config):
    async def session(url):
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws") as ws:
            hello = await _next(ws, "hello")
            assert hello["attributes"] == {"palette": 4, "shape": 4, "colour": 8, "density": 3}
            await ws.send_json({"type": "move", "move": 1})
            assert "move: send start first" in (await _next(ws, "error"))["message"]
            await ws.send_json({"type": "start", "seed": 1000000, "prefill_seconds": 1.5})
            opening = await _next(ws, "opening")
            assert [f["index"] for f in opening["frames"]] == list(range(6))
            assert opening["frames"][0]["png"].startswith("data:image/png;base64,")
            assert [s["frame"] for s in opening["memory"]["sink"]] == [0, 1, 2]
            x0 = opening["camera_x"]
            chunk = await _next(ws, "chunk")
            assert [f["index"] for f in chunk["frames"]] == [6, 7, 8]
            # bad messages: an error each, the session goes on
            for bad in (
                '{"type": "move", "move": 5}',
                "not json",
                '{"type": "prompt", "prompt": "x", "extra": 1}',
                '{"type": "start", "seed": 1}',
            ):
                await ws.send_str(bad)
                assert (await _next(ws, "error"))["message"]
            await ws.send_bytes(b"\x00\x01")
            assert "binary" in (await _next(ws, "error"))["message"]
            # the camera: right for a while, then back left to where it started
            await ws.send_json({"type": "move", "move": 1 if x0 < 80 else -1})
            moved = await _next(ws, "chunk")
            moved = await _next(ws, "chunk")
            assert moved["camera_x"] != x0
            await ws.send_json({"type": "move", "move": -1 if x0 < 80 else 1})
            while (chunk := await _next(ws, "chunk"))["camera_x"] != x0:
                pass
            await ws.send_json({"type": "move", "move": 0})
            assert len(chunk["memory"]["slow"]) >= 2
            # a prompt switch with flush: applied before the next chunk; slow memory was emptied, so after
            # that chunk it holds only the kept chunk's first frame,
            # admitted when the new chunk pushed it out of fast
            await ws.send_json({"type": "prompt", "prompt": PROMPT, "policy": "flush"})
            while (chunk := await _next(ws, "chunk"))["switch"] is None:
                pass
            assert chunk["switch"]["policy"] == "flush" and chunk["prompt"] == PROMPT
            assert [s["frame"] for s in chunk["memory"]["slow"]] == [chunk["frames_done"] - 6]
            later = await _next(ws, "chunk")
            assert later["frames_done"] == chunk["frames_done"] + 3
            # admission decisions arrive as they happen (uniform1: every candidate admitted)
            assert later["events"] == [
                {
                    "candidate": [
                        later["frames_done"] - 6,
                        later["frames_done"] - 5,
                        later["frames_done"] - 4,
                    ],
                    "admitted": True,
                }
            ]
            await ws.send_json({"type": "pause"})
            await asyncio.sleep(0.5)
            while not ws.closed:  # drain what was in flight, then nothing more comes
                try:
                    await asyncio.wait_for(ws.receive_json(), timeout=1.0)
                except asyncio.TimeoutError:
                    break
            await ws.send_json({"type": "resume"})
            assert (await _next(ws, "chunk"))["type"] == "chunk"

    with BackgroundServer(config) as server:
        asyncio.run(session(server.url))
        status = _wait_idle(server)
        assert status["active_sessions"] == 0 and status["sessions_started"] == 1


def test_limit_refuses_clearly_and_a_closed_page_frees_its_session(config, monkeypatch):
    import gc
    import weakref

    from context_forcing.serve import app as app_module

    alive = []

    class TrackedSession(app_module.LiveSession):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            alive.append(weakref.ref(self))

    monkeypatch.setattr(app_module, "LiveSession", TrackedSession)

    async def run(url, server):
        async with aiohttp.ClientSession() as http:
            first = await http.ws_connect(f"{url}/ws")
            await _next(first, "hello")
            await first.send_json({"type": "start", "seed": 5})
            await _next(first, "chunk")
            second = await http.ws_connect(f"{url}/ws")
            refusal = await second.receive_json()
            assert refusal == {
                "type": "refused",
                "message": "server busy: 1 of 1 sessions in use; close another page or try again later",
            }
            await second.receive()
            assert second.closed and second.close_code == 1013
            await first.close()  # mid-stream
            for _ in range(100):
                if (await _status_async(server))["active_sessions"] == 0:
                    break
                await asyncio.sleep(0.05)
            third = await http.ws_connect(f"{url}/ws")
            assert (await third.receive_json())["type"] == "hello"
            await third.close()

    with BackgroundServer(config) as server:
        asyncio.run(run(server.url, server))
        status = _wait_idle(server)
        assert (
            status["active_sessions"] == 0
            and status["sessions_refused"] == 1
            and status["sessions_started"] == 2
        )
        gc.collect()
        assert (
            len(alive) == 1 and alive[0]() is None
        )  # the closed page's session (model memory included) is gone


def test_pacing_keeps_a_session_to_real_time(config):
    config.pace = True  # 3 latent frames per chunk at 4 per second: a chunk every 0.75 s at most

    async def run(url):
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws") as ws:
            await _next(ws, "hello")
            await ws.send_json({"type": "start", "seed": 3})
            await _next(ws, "opening")
            tic = time.monotonic()
            for _ in range(3):
                await _next(ws, "chunk")
            return time.monotonic() - tic

    with BackgroundServer(config) as server:
        assert asyncio.run(run(server.url)) >= 3 * 0.75 - 0.05
