"""The aiohttp application: `/` (the page), `/page/NAME` (its script and style), `/status` (JSON), `/ws`
(one live session per WebSocket connection). Anything else is a 404 and the server goes on.

Model work runs in a thread pool (one worker per allowed session), so the event loop keeps reading messages
while chunks are generated; a session's chunks run one after another.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import resource
import sys
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from context_forcing.codecs import Codec
from context_forcing.config import RunConfig
from context_forcing.data.panworld import PanWorldConfig
from context_forcing.memory.layout import MemoryLayout
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.live import attribute_sizes
from context_forcing.rollout.prompt_switch import POLICIES
from context_forcing.serve.live_session import LiveSession
from context_forcing.serve.manager import SessionLimitReached, SessionManager
from context_forcing.serve.messages import (
    MAX_MESSAGE_CHARS,
    MAX_PREFILL_SECONDS,
    MessageError,
    Move,
    Pause,
    PromptSwitchRequest,
    Resume,
    Start,
    parse_message,
)

log = logging.getLogger("context_forcing.serve")
PAGE_FILES = {"app.js": "application/javascript", "style.css": "text/css"}  # served from page/, nothing else
MAX_PENDING_SWITCHES = 4
WS_MAX_BYTES = 64 * 1024  # larger frames close the connection (aiohttp); below it, MAX_MESSAGE_CHARS answers


@dataclass
class ServeConfig:
    """What the server streams with: one model shared (read-only) by every session."""

    model: CausalVideoDiT
    run: RunConfig
    codec: Codec
    layout: MemoryLayout
    checkpoint: str  # shown on the page ("random" for random weights)
    max_sessions: int = 2
    pace: bool = True  # at most real time (one chunk per chunk duration); False: as fast as the machine goes
    world: PanWorldConfig = field(default_factory=PanWorldConfig)


@dataclass
class Controls:
    """What the page asked for since the last chunk (touched only on the event loop)."""

    held: int = 0  # the direction key held down
    tapped: int = 0  # the last non-zero move since the last chunk, so a short tap still moves one chunk
    switches: list[PromptSwitchRequest] = field(default_factory=list)
    running: asyncio.Event = field(default_factory=asyncio.Event)

    def take_move(self) -> int:
        move = self.held or self.tapped
        self.tapped = 0
        return move


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * resource.getpagesize() / (1024 * 1024)
    except OSError:
        return peak_rss_mb()


def page_text(name: str) -> str:
    return resources.files("context_forcing.serve").joinpath("page", name).read_text(encoding="utf-8")


CONFIG = web.AppKey("config", ServeConfig)
MANAGER = web.AppKey("manager", SessionManager)
EXECUTOR = web.AppKey("executor", concurrent.futures.ThreadPoolExecutor)


def build_app(config: ServeConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_MESSAGE_CHARS * 4)
    app[CONFIG] = config
    app[MANAGER] = SessionManager(config.max_sessions)
    app[EXECUTOR] = concurrent.futures.ThreadPoolExecutor(config.max_sessions, thread_name_prefix="session")
    app.on_cleanup.append(_shutdown_executor)
    app.router.add_get("/", _index)
    app.router.add_get("/page/{name}", _page_file)
    app.router.add_get("/status", _status)
    app.router.add_get("/ws", _websocket)
    return app


async def _shutdown_executor(app: web.Application) -> None:
    app[EXECUTOR].shutdown(wait=True, cancel_futures=True)


async def _index(request: web.Request) -> web.Response:
    return web.Response(text=page_text("index.html"), content_type="text/html")


async def _page_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in PAGE_FILES:  # a whitelist: no path from the request ever reaches the file system
        raise web.HTTPNotFound(text=f"no page file {name[:64]!r}")
    return web.Response(text=page_text(name), content_type=PAGE_FILES[name])


async def _status(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    return web.json_response(
        {
            "active_sessions": manager.active,
            "max_sessions": manager.limit,
            "sessions_started": manager.started,
            "sessions_refused": manager.refused,
            "threads_alive": threading.active_count(),
            "rss_mb": round(current_rss_mb(), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    )


def hello(config: ServeConfig) -> dict[str, Any]:
    """The first message of a session: what the page may send and what the server streams with."""
    return {
        "type": "hello",
        "preset": config.run.preset,
        "checkpoint": config.checkpoint,
        "layout": config.layout.name,
        "attributes": attribute_sizes(config.world),
        "moves": list(config.world.moves),
        "policies": list(POLICIES),
        "chunk_seconds": config.run.chunk / config.run.video.latent_frames_per_second,
        "max_prefill_seconds": MAX_PREFILL_SECONDS,
        "max_message_chars": MAX_MESSAGE_CHARS,
    }


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    ws = web.WebSocketResponse(max_msg_size=WS_MAX_BYTES, heartbeat=30.0)
    await ws.prepare(request)
    try:
        session_id = app[MANAGER].acquire()
    except SessionLimitReached as refusal:
        await ws.send_json({"type": "refused", "message": str(refusal)})
        await ws.close(code=1013, message=b"server busy")  # 1013: try again later
        return ws
    log.info("session %d opened", session_id)
    runner = _SessionRunner(app[CONFIG], app[EXECUTOR], ws)
    try:
        await ws.send_json(hello(app[CONFIG]))
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await runner.handle(message.data)
            elif message.type == WSMsgType.BINARY:
                await runner.error("binary messages are not accepted; send JSON text")
            else:  # ERROR (e.g. an oversized frame): the connection ends
                break
    finally:
        await runner.stop()
        app[MANAGER].release(session_id)
        log.info("session %d closed", session_id)
    return ws


class _SessionRunner:
    """One connection's session: handles its messages, runs its chunks one after another in the pool."""

    def __init__(
        self, config: ServeConfig, executor: concurrent.futures.Executor, ws: web.WebSocketResponse
    ) -> None:
        self.config, self.executor, self.ws = config, executor, ws
        self.controls = Controls()
        self.live: LiveSession | None = None
        self.task: asyncio.Task | None = None
        self.work: asyncio.Future | None = None  # the step running in the pool, if any

    async def error(self, text: str) -> None:
        if not self.ws.closed:
            await self.ws.send_json({"type": "error", "message": text})

    async def handle(self, text: str) -> None:
        try:
            command = parse_message(text, self.config.world)
        except MessageError as error:
            await self.error(str(error))
            return
        if isinstance(command, Start):
            if self.task is not None:
                await self.error("start: this connection's session has started already (one per connection)")
                return
            self.task = asyncio.create_task(self._run(command))
        elif self.task is None:
            await self.error(f"{type(command).__name__.lower()}: send start first")
        elif isinstance(command, Move):
            self.controls.held = command.move
            self.controls.tapped = command.move or self.controls.tapped
        elif isinstance(command, PromptSwitchRequest):
            if len(self.controls.switches) >= MAX_PENDING_SWITCHES:
                await self.error(
                    f"prompt: {MAX_PENDING_SWITCHES} switches are waiting for the next chunk already"
                )
                return
            self.controls.switches.append(command)
        elif isinstance(command, Pause):
            self.controls.running.clear()
        elif isinstance(command, Resume):
            self.controls.running.set()

    async def _in_pool(self, fn, *args):
        """Run model work in the pool; a cancelled session still waits for it to finish (see `stop`)."""
        self.work = asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        return await asyncio.shield(self.work)

    async def _run(self, start: Start) -> None:
        config = self.config
        try:
            self.live = await self._in_pool(
                LiveSession,
                config.model,
                config.run,
                config.codec,
                config.layout,
                start.seed,
                start.prefill_seconds,
                config.world,
            )
            await self.ws.send_json(await self._in_pool(self.live.opening))
            self.controls.running.set()
            loop = asyncio.get_running_loop()
            chunk_seconds = config.run.chunk / config.run.video.latent_frames_per_second
            due = loop.time()
            while not self.ws.closed:
                await self.controls.running.wait()
                if config.pace:  # no faster than the video plays: the camera answers within a chunk
                    due = max(due + chunk_seconds, loop.time())
                    await asyncio.sleep(due - loop.time())
                switches, self.controls.switches = self.controls.switches, []
                for switch in switches:
                    await self._in_pool(self.live.switch_prompt, switch.values, switch.policy)
                update = await self._in_pool(self.live.step, self.controls.take_move())
                if not self.ws.closed:
                    await self.ws.send_json(update)
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:
            pass
        except Exception as error:  # a bug, not a bad message: end this session, keep the server
            log.exception("session failed")
            await self.error(f"the session stopped: {type(error).__name__}: {error}")
            await self.ws.close()

    async def stop(self) -> None:
        """End the session: cancel its loop, wait for model work in flight,
        drop the session (memory freed)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.work is not None:
            await asyncio.gather(self.work, return_exceptions=True)
        self.live = None
