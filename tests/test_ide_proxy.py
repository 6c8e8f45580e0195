"""The Bela IDE proxy against a real upstream HTTP + websocket server standing in for the IDE."""
import aiohttp
import pytest
from aiohttp import web

from service.ide_proxy import start_ide_proxy

from .service_helpers import free_port

IDE_PAGE = b"<html><head><script src='/socket.io/socket.io.js'></script></head><body><div id='ide'>IDE</div></body></html>"


@pytest.fixture
async def upstream():
    async def index(request):
        return web.Response(body=IDE_PAGE, content_type="text/html", headers={"ETag": '"ide-1"'})

    async def asset(request):
        return web.Response(body=bytes(range(256)) * 40, content_type="application/octet-stream")

    async def echo_post(request):
        return web.json_response({"got": (await request.read()).decode(), "path": request.path_qs})

    async def socket_io(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('0{"sid":"abc"}')
        async for message in ws:
            await ws.send_str("echo:" + message.data)
        return ws

    app = web.Application()
    app.add_routes([web.get("/", index), web.get("/js/bundle.bin", asset), web.post("/api/save", echo_post),
                    web.get("/socket.io/", socket_io)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def proxy(upstream):
    port = free_port()
    runner = await start_ide_proxy(upstream, "http://127.0.0.1:8765/", "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_ide_page_gets_the_panel_and_everything_else_passes_unchanged(proxy):
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy + "/") as response:
            page = await response.text()
            assert "ETag" not in response.headers and response.headers["Cache-Control"] == "no-store"
        assert "<div id='ide'>IDE</div>" in page
        assert 'src="http://127.0.0.1:8765/panel.js"' in page and "BelaIree.createPanel" in page
        assert page.index("bela-iree-side") < page.index("</body>")
        async with session.get(proxy + "/js/bundle.bin") as response:
            assert await response.read() == bytes(range(256)) * 40
        async with session.post(proxy + "/api/save?project=x", data="hello") as response:
            assert await response.json() == {"got": "hello", "path": "/api/save?project=x"}
        async with session.get(proxy + "/missing") as response:
            assert response.status == 404


async def test_ide_websocket_is_bridged_both_ways(proxy):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(proxy.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket") as ws:
            assert (await ws.receive_str()) == '0{"sid":"abc"}'
            await ws.send_str('42["status"]')
            assert (await ws.receive_str()) == 'echo:42["status"]'


async def test_proxy_refuses_foreign_hosts_and_reports_a_missing_ide(upstream):
    port = free_port()
    runner = await start_ide_proxy("http://127.0.0.1:9", "http://127.0.0.1:8765/", "127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/", headers={"Host": "evil.example"}) as response:
                assert response.status == 403
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 502 and "not answering" in await response.text()
    finally:
        await runner.cleanup()
