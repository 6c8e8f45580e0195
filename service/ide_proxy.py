"""The Bela IDE, served through bela-iree with the panel injected as a side panel.

The IDE has no plugin API and its pages use absolute paths (`/css/...`, `/socket.io/`), so it
is served at the root of its own local port: every HTTP request is passed to the IDE
unchanged, websockets (the IDE's socket.io) are bridged both ways, and the IDE's main page
gets the panel added before </body>. Nothing on the board changes.
"""
from __future__ import annotations

import asyncio
import html

import aiohttp
from aiohttp import WSMsgType, web

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length", "content-encoding", "accept-encoding"}
PANEL_WIDTH = 400


def panel_snippet(service_url: str) -> str:
    service = html.escape(service_url.rstrip("/"), quote=True)
    return f"""
<!-- bela-iree panel, injected by bela-iree serve -->
<link rel="stylesheet" href="{service}/vendor/uPlot.min.css"><link rel="stylesheet" href="{service}/panel.css">
<style>
  #bela-iree-side {{ position: fixed; top: 0; right: 0; width: {PANEL_WIDTH}px; height: 100vh; overflow-y: auto;
    z-index: 10000; box-shadow: -2px 0 6px rgba(0,0,0,.15); background: #fafafa; padding-left: 22px; box-sizing: border-box; }}
  #bela-iree-side.collapsed {{ width: 28px; overflow: hidden; }}
  body.bela-iree-open {{ margin-right: {PANEL_WIDTH}px !important; }}
  #bela-iree-toggle {{ position: absolute; top: 0; left: 0; width: 22px; height: 100%; cursor: pointer; border: 0;
    background: #e8e8e8; padding: 6px 0 0; vertical-align: top; text-align: center; align-items: flex-start; display: flex; justify-content: center; }}
</style>
<div id="bela-iree-side"><button id="bela-iree-toggle" title="show/hide bela-iree">&#9776;</button></div>
<script src="{service}/vendor/uPlot.iife.min.js"></script>
<script src="{service}/panel.js"></script>
<script>
(function () {{
  var side = document.getElementById("bela-iree-side");
  document.body.classList.add("bela-iree-open");
  document.getElementById("bela-iree-toggle").onclick = function () {{
    side.classList.toggle("collapsed");
    document.body.classList.toggle("bela-iree-open");
    window.dispatchEvent(new Event("resize"));
  }};
  var ide = (typeof io === "function") ? io("/IDE") : null;  // the IDE's own socket.io events
  window.belaIreePanel = BelaIree.createPanel(side, {{service: "{service}", ide: ide}});
}})();
</script>
"""


class IdeProxy:
    def __init__(self, ide_url: str, service_url: str, host: str, port: int):
        self.ide_url = ide_url.rstrip("/")
        self.snippet = panel_snippet(service_url)
        self.host, self.port = host, port
        self.session: aiohttp.ClientSession | None = None
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{path:.*}", self.forward)
        self.app.on_cleanup.append(self._close)

    async def _close(self, app) -> None:
        if self.session:
            await self.session.close()

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(auto_decompress=True, timeout=aiohttp.ClientTimeout(total=None, connect=5))
        return self.session

    def allowed_hosts(self) -> set[str]:
        return {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]", self.host)}

    async def forward(self, request: web.Request) -> web.StreamResponse:
        if request.host not in self.allowed_hosts():
            return web.Response(status=403, text="this proxy serves the Bela IDE on localhost only")
        url = self.ide_url + request.rel_url.path_qs
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._bridge_websocket(request, url)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            async with self._session().request(request.method, url, headers=headers, data=await request.read(),
                                               allow_redirects=False) as upstream:
                body = await upstream.read()
                response_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                if upstream.content_type == "text/html" and b"</body>" in body:
                    at = body.rindex(b"</body>")
                    body = body[:at] + self.snippet.encode() + body[at:]
                    # the page now differs from the IDE's: no cached copy (with an older panel) may be used
                    response_headers = {k: v for k, v in response_headers.items()
                                        if k.lower() not in ("etag", "last-modified", "cache-control")}
                    response_headers["Cache-Control"] = "no-store"
                return web.Response(status=upstream.status, body=body, headers=response_headers)
        except aiohttp.ClientError as e:
            return web.Response(status=502, text=f"the Bela IDE at {self.ide_url} is not answering: {e}\n"
                                                 "is the board connected and the IDE running?")

    async def _bridge_websocket(self, request: web.Request, url: str) -> web.StreamResponse:
        ws_url = "ws" + url[4:] if url.startswith("http") else url
        try:
            upstream = await self._session().ws_connect(ws_url, headers={"Origin": self.ide_url}, max_msg_size=0)
        except aiohttp.ClientError as e:
            return web.Response(status=502, text=f"the Bela IDE's websocket is not answering: {e}")
        downstream = web.WebSocketResponse(max_msg_size=0)
        await downstream.prepare(request)

        async def pump(source, sink):
            async for message in source:
                if message.type == WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                else:
                    break
        tasks = [asyncio.create_task(pump(upstream, downstream)), asyncio.create_task(pump(downstream, upstream))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await upstream.close()
        await downstream.close()
        return downstream


async def start_ide_proxy(ide_url: str, service_url: str, host: str, port: int) -> web.AppRunner:
    proxy = IdeProxy(ide_url, service_url, host, port)
    runner = web.AppRunner(proxy.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
