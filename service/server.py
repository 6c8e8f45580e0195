"""The HTTP + websocket server of `bela-iree serve` (contract: docs/design.md).

Routes: `/` the standalone panel page, `/panel.js` `/panel.css` and `/vendor/*` its files,
`/api/history` the builds (newest first), `/ws` the event stream. It imports no ML code: it is
handed a Builder. Requests whose Host or Origin is not this server's (or the configured Bela
IDE's) are refused, so no web page can make the service run model.py; only files of the panel
are ever served. Events reach the clients through the Broadcaster (broadcast.py), which `serve`
builds first and hands to everyone who publishes.
"""
from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from aiohttp import WSMsgType, web

from . import events
from .broadcast import Broadcaster
from .cpu import ProcStatSampler
from .history import History
from .layout import HISTORY

PANEL_DIR = Path(__file__).resolve().parents[1] / "ide_extension"
PANEL_FILES = {"/panel.js": ("panel.js", "application/javascript"), "/panel.css": ("panel.css", "text/css")}
# the charting library, installed from npm by `make` (ide_extension/package.json); only these files
VENDOR_FILES = {name: PANEL_DIR / "node_modules" / "uplot" / "dist" / name for name in ("uPlot.iife.min.js", "uPlot.min.css")}
HISTORY_LIMIT = 1000


class Server:
    def __init__(self, builder, broadcaster: Broadcaster, history: History, project: Path, host: str, port: int,
                 extra_origins: tuple[str, ...] = (), cpu_source=None, board: str | None = None):
        self.builder = builder
        self.broadcaster = broadcaster
        broadcaster.on_drop = lambda ws: asyncio.get_running_loop().create_task(
            ws.close(code=1008, message=b"too slow: events were dropped"))
        self.history = history
        self.project = project
        self.host, self.port = host, port
        self.extra_origins = extra_origins
        self.host_cpu = ProcStatSampler()
        self.cpu_source = cpu_source or (lambda: events.cpu(self.host_cpu.sample(), "host"))
        self.board = board
        self.app = web.Application(middlewares=[self.same_origin_only], client_max_size=64 * 1024)
        self.app.add_routes([web.get("/", self.index), web.get("/api/history", self.api_history),
                             web.get("/ws", self.websocket), web.get("/vendor/{name}", self.vendor),
                             *[web.get(path, self.panel_file) for path in PANEL_FILES]])

    # ---- who may talk to us ----------------------------------------------------------------------

    def allowed_hosts(self) -> set[str]:
        names = {"127.0.0.1", "localhost", "[::1]", self.host}
        return {f"{name}:{self.port}" for name in names}

    def allowed_origins(self) -> set[str]:
        return {f"http://{host}" for host in self.allowed_hosts()} | set(self.extra_origins)

    @web.middleware
    async def same_origin_only(self, request: web.Request, handler):
        if request.host not in self.allowed_hosts():
            return web.json_response({"error": f"host {request.host!r} is not this service"}, status=403)
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self.allowed_origins():
            return web.json_response({"error": f"origin {origin!r} may not use this service"}, status=403)
        return await handler(request)

    # ---- HTTP ----------------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return web.FileResponse(PANEL_DIR / "index.html")

    async def panel_file(self, request: web.Request) -> web.Response:
        name, content_type = PANEL_FILES[request.path]
        return web.FileResponse(PANEL_DIR / name, headers={"Content-Type": content_type})

    async def vendor(self, request: web.Request) -> web.Response:
        path = VENDOR_FILES.get(request.match_info["name"])  # only the bundled files, never a path
        if path is None or not path.exists():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def api_history(self, request: web.Request) -> web.Response:
        return web.json_response(self.history.builds(HISTORY_LIMIT))

    # ---- websocket -----------------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=events.MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        queue = self.broadcaster.add(ws)
        sender = asyncio.create_task(self._send_loop(ws, queue))
        self.broadcaster.offer(ws, events.hello(self.project.name, self.builder.target, list(self._targets()), self.board))
        self.broadcaster.offer(ws, events.history(self.history.builds(HISTORY_LIMIT)))
        self.broadcaster.replay(ws)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._handle(ws, message.data)
                elif message.type == WSMsgType.BINARY:
                    self.broadcaster.offer(ws, events.error("binary messages are not understood; send JSON text"))
        finally:
            self.broadcaster.remove(ws)
            sender.cancel()
        return ws

    def _targets(self):
        from .pipeline.targets import TARGETS
        return TARGETS

    def _handle(self, ws, text: str) -> None:
        try:
            request = events.parse_request(text, list(self._targets()))
        except events.BadRequest as e:
            self.broadcaster.offer(ws, events.error(str(e)))
            return
        if request["type"] == "rebuild":
            self.builder.request("rebuild asked from the panel")
        elif request["type"] == "set_target":
            self.builder.request(f"target set to {request['target']} from the panel", target=request["target"])

    async def _send_loop(self, ws: web.WebSocketResponse, queue: asyncio.Queue) -> None:
        try:
            while True:
                await ws.send_str(await queue.get())
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass

    async def stream_cpu(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                sample = self.cpu_source()
                if asyncio.iscoroutine(sample):
                    sample = await sample
            except Exception as e:  # a board that went away: say so, keep streaming
                self.broadcaster.publish(events.log(None, f"cpu: {e}"))
                continue
            if sample:
                self.broadcaster.publish(sample)


async def serve(project: Path, host: str = "127.0.0.1", port: int = 8765, target: str | None = None,
                ready=None, builder_options: dict | None = None, ide_url: str | None = None, ide_port: int = 8766,
                board=None, tune: bool = True) -> None:
    """Run the service until SIGINT/SIGTERM. `ready(url, ide_url)` is called once it listens.
    With `ide_url`, the Bela IDE at that address is also served on `ide_port` with the panel in it.
    Wiring, in order: the broadcaster, the board session (if any), the steps, the builder, the server."""
    from .build_steps import BoardSteps, HostSteps
    from .builder import Builder

    project = project.resolve()
    history = History(project / HISTORY)
    broadcaster = Broadcaster()
    session = None
    if board:
        from .board.session import BoardSession
        session = BoardSession(board, project, broadcaster.publish, ide_url)
    steps = BoardSteps(session, tune) if session else HostSteps(tune)
    builder = Builder(project, broadcaster.publish, history, steps, target, **(builder_options or {}))
    if session:
        session.current_build = lambda: builder.current_id
    proxy_origins = tuple(f"http://{name}:{ide_port}" for name in ("127.0.0.1", "localhost")) if ide_url else ()
    server = Server(builder, broadcaster, history, project, host, port, proxy_origins,
                    cpu_source=session.cpu_sample if session else None, board=str(board.address) if board else None)
    if session:
        session.start()
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    await builder.start()
    from .watcher import ProjectWatcher
    watcher = ProjectWatcher(project, builder.file_changed)
    watcher.start(asyncio.get_running_loop())
    builder.on_data_files = watcher.watch_files   # weights.pt & co, once a build has read them
    cpu_task = asyncio.create_task(server.stream_cpu())
    builder.request("service started")
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '127.0.0.1') else host}:{port}/"
    proxy = None
    if ide_url:
        from .ide_proxy import start_ide_proxy
        proxy = await start_ide_proxy(ide_url, url, host, ide_port)
    if ready:
        ready(url, f"http://127.0.0.1:{ide_port}/" if ide_url else None)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        cpu_task.cancel()
        watcher.stop()
        await builder.stop()
        if session:
            await session.stop()
        for ws in broadcaster.clients:
            await ws.close()
        await runner.cleanup()
        if proxy:
            await proxy.cleanup()
        history.close()
