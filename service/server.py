"""The HTTP + websocket server of `bela-iree serve` (contract: docs/design.md).

Routes: `/` the standalone panel page, `/panel.js` `/panel.css` and `/vendor/*` its files,
`/api/history` the builds (newest first), `/ws` the event stream. It imports no ML code: it is
handed a Builder. Requests whose Host or Origin is not this server's (or the configured Bela
IDE's) are refused, so no web page can make the service run model.py; only files of the panel
are ever served. Each websocket client gets a bounded queue: a client that stops reading is
dropped when its queue fills, and never slows the others.
"""
from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from aiohttp import WSMsgType, web

from . import events
from .cpu import ProcStatSampler
from .history import History

PANEL_DIR = Path(__file__).resolve().parents[1] / "ide_extension"
PANEL_FILES = {"/panel.js": ("panel.js", "application/javascript"), "/panel.css": ("panel.css", "text/css")}
# the charting library, installed from npm by `make` (ide_extension/package.json); only these files
VENDOR_FILES = {name: PANEL_DIR / "node_modules" / "uplot" / "dist" / name for name in ("uPlot.iife.min.js", "uPlot.min.css")}
CLIENT_QUEUE = 2000
STICKY = ("board",)   # the latest message of these types is replayed to each new client
HISTORY_LIMIT = 1000


class Server:
    def __init__(self, builder, history: History, project: Path, host: str, port: int,
                 extra_origins: tuple[str, ...] = (), cpu_source=None, board: str | None = None):
        self.builder = builder
        self.history = history
        self.project = project
        self.host, self.port = host, port
        self.extra_origins = extra_origins
        self.host_cpu = ProcStatSampler()
        self.cpu_source = cpu_source or (lambda: events.cpu(self.host_cpu.sample(), "host"))
        self.board = board
        self.clients: dict[web.WebSocketResponse, asyncio.Queue] = {}
        self.sticky: dict[str, dict] = {}
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
        queue: asyncio.Queue = asyncio.Queue(CLIENT_QUEUE)
        self.clients[ws] = queue
        sender = asyncio.create_task(self._send_loop(ws, queue))
        self._offer(ws, events.hello(self.project.name, self.builder.target, list(self._targets()), self.board))
        self._offer(ws, events.history(self.history.builds(HISTORY_LIMIT)))
        for message in self.sticky.values():
            self._offer(ws, message)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._handle(ws, message.data)
                elif message.type == WSMsgType.BINARY:
                    self._offer(ws, events.error("binary messages are not understood; send JSON text"))
        finally:
            self.clients.pop(ws, None)
            sender.cancel()
        return ws

    def _targets(self):
        from .pipeline.targets import TARGETS
        return TARGETS

    def _handle(self, ws, text: str) -> None:
        try:
            request = events.parse_request(text, list(self._targets()))
        except events.BadRequest as e:
            self._offer(ws, events.error(str(e)))
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

    def _offer(self, ws: web.WebSocketResponse, message: dict, text: str | None = None) -> None:
        queue = self.clients.get(ws)
        if queue is None:
            return
        try:
            queue.put_nowait(text or json.dumps(message))
        except asyncio.QueueFull:  # this client stopped reading: drop it, not the others
            self.clients.pop(ws, None)
            asyncio.get_running_loop().create_task(ws.close(code=1008, message=b"too slow: events were dropped"))

    def publish(self, message: dict) -> None:
        if message["type"] in STICKY:
            self.sticky[message["type"]] = message
        text = json.dumps(message)
        for ws in list(self.clients):
            self._offer(ws, message, text)

    async def stream_cpu(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                sample = self.cpu_source()
                if asyncio.iscoroutine(sample):
                    sample = await sample
            except Exception as e:  # a board that went away: say so, keep streaming
                self.publish(events.log(None, f"cpu: {e}"))
                continue
            if sample:
                self.publish(sample)


async def serve(project: Path, host: str = "127.0.0.1", port: int = 8765, target: str | None = None,
                ready=None, builder_options: dict | None = None, ide_url: str | None = None, ide_port: int = 8766,
                board=None) -> None:
    """Run the service until SIGINT/SIGTERM. `ready(url, ide_url)` is called once it listens.
    With `ide_url`, the Bela IDE at that address is also served on `ide_port` with the panel in it."""
    from .builder import Builder
    from .project import GENERATED

    project = project.resolve()
    history = History(project / GENERATED / "history.sqlite")
    publish_to = []
    builder = Builder(project, lambda message: publish_to[0].publish(message), history, target, **(builder_options or {}))
    proxy_origins = tuple(f"http://{name}:{ide_port}" for name in ("127.0.0.1", "localhost")) if ide_url else ()
    session = None
    if board:
        from .board.session import BoardSession
        session = BoardSession(board, project, lambda message: publish_to[0].publish(message))
        builder.bench_runner = session.deploy_and_bench
        builder.board_tuner = session.tune
    server = Server(builder, history, project, host, port, proxy_origins,
                    cpu_source=session.cpu_sample if session else None, board=str(board.address) if board else None)
    publish_to.append(server)
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
        for ws in list(server.clients):
            await ws.close()
        await runner.cleanup()
        if proxy:
            await proxy.cleanup()
        history.close()
