"""The panel in a real browser: Debian's Chromium driven by Playwright, against the real service.
Screenshots go to test-artifacts/ for people to look at."""
import json
import time

import pytest
from playwright.async_api import async_playwright

from .conftest import ARTIFACTS, cli
from .service_helpers import Service

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
async def browser(tmp_path):
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport={"width": 1000, "height": 1100})
        yield context
        await context.close()


async def open_panel(browser, url: str):
    page = await browser.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.goto(url)
    await page.wait_for_selector(".bi-connection[data-state=connected]", timeout=30000)
    return page, problems


async def wait_state(page, state: str, build_id: int | None = None, timeout: float = 180):
    selector = f".bi-status[data-state={state}]"
    await page.wait_for_selector(selector, timeout=timeout * 1000)
    if build_id is not None:
        await page.wait_for_function(f"document.querySelector('.bi-status-line').textContent.startsWith('build {build_id} ')",
                                     timeout=timeout * 1000)


def shot(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / f"{name}.png")


async def test_panel_follows_saves_errors_reloads_and_restarts(browser, tmp_path):
    project = tmp_path / "panel"
    cli("new", str(project), "--target", "host")
    service = Service(project)
    try:
        page, problems = await open_panel(browser, service.url)
        await wait_state(page, "done")
        await page.wait_for_function("belaIreePanel.state().latencyPoints >= 1", timeout=60000)
        await page.screenshot(path=shot("panel-standalone"))

        # a save moves the status through its stages and adds a point to the latency chart
        seen = []
        await page.expose_function("noteStage", lambda s: seen.append(s))
        await page.evaluate("""new MutationObserver(() => noteStage(document.querySelector('.bi-status').dataset.state))
                               .observe(document.querySelector('.bi-status'), {attributes: true})""")
        model = project / "model.py"
        model.write_text(model.read_text().replace("hidden: int = 16", "hidden: int = 20"))
        await page.wait_for_function("belaIreePanel.state().latencyPoints >= 2", timeout=180000)
        await wait_state(page, "done")
        assert {"exporting", "compiling", "benchmarking", "done"} <= set(seen), seen
        verdict = await page.text_content(".bi-verdict")
        assert "fits:" in verdict and "(vmfb" in verdict and "on host)" in verdict   # the format measured, and where
        assert "; glue in render(): 0 samples latency" in verdict   # the starter at 16 frames, microseconds here
        assert await page.locator(".bi-dispatches tr").count() >= 1

        # a broken model.py shows the error with its line
        good = model.read_text()
        model.write_text(good.replace("def model():", "def model()"))
        await wait_state(page, "failed")
        where = await page.text_content(".bi-error-where")
        line = next(i for i, text in enumerate(model.read_text().splitlines(), 1) if text.startswith("def model()"))
        assert f"model.py:{line}" in where and "export" in where
        await page.screenshot(path=shot("panel-error"))
        model.write_text(good)
        await wait_state(page, "done")

        # a reload shows the same history
        points = await page.evaluate("belaIreePanel.state().latencyPoints")
        await page.reload()
        await page.wait_for_selector(".bi-connection[data-state=connected]")
        await page.wait_for_function(f"belaIreePanel.state().latencyPoints >= {points}", timeout=30000)

        # the service restarts: the panel notices, reconnects, and keeps working
        assert not problems, problems
        service.stop()
        await page.wait_for_selector(".bi-connection[data-state^=disconnected]", timeout=30000)
        service = Service(project, port=service.port)  # on the port the page knows
        await page.wait_for_selector(".bi-connection[data-state=connected]", timeout=60000)
        await wait_state(page, "done")
        # while the service was down the browser logs each refused reconnection attempt: expected
        assert not [p for p in problems if "ERR_CONNECTION_REFUSED" not in p], problems
    finally:
        service.stop()


async def test_panel_handles_a_thousand_builds_and_an_hour_of_cpu(browser, tmp_path):
    project = tmp_path / "busy"
    cli("new", str(project), "--target", "host")
    history = project / "generated" / "history.sqlite"
    from service.history import History
    store = History(history)
    bench = {"latency_ms": {"min": 0.1, "median": 0.2, "p99": 0.4, "max": 0.9}, "deadline_ms": 23.2}
    for i in range(1000):
        build = store.start("host", "vmfb", "save")
        store.update(build, state="done", bench={**bench, "latency_ms": {**bench["latency_ms"], "median": 0.2 + i / 1e4}})
    store.close()
    service = Service(project)
    try:
        page, problems = await open_panel(browser, service.url)
        await page.wait_for_function("belaIreePanel.state().latencyPoints >= 1000", timeout=60000)
        started = time.perf_counter()
        await page.evaluate("""() => { const now = Date.now() / 1000;
            for (let i = 0; i < 3600; i++) belaIreePanel.receive({type: 'cpu', t: now - 3600 + i, percent: 20 + 10 * Math.sin(i / 50), source: 'host'}); }""")
        await page.wait_for_function("belaIreePanel.state().cpuSamples >= 3600")
        # still responsive: a click is answered
        before = await page.evaluate("belaIreePanel.state().lastBuild.id")
        await page.click(".bi-rebuild")
        await page.wait_for_function(f"(b => b.id > {before} && b.state === 'done')(belaIreePanel.state().lastBuild)",
                                     timeout=120000)
        elapsed = time.perf_counter() - started
        # a board that went away is shown in the header, with why as its tooltip
        assert await page.is_hidden(".bi-board")   # no --board: nothing shown
        await page.evaluate("""() => belaIreePanel.receive({type: 'board', state: 'offline', address: 'root@bela.local',
                                                            message: 'cannot reach root@bela.local'})""")
        board = page.locator(".bi-board[data-state=offline]")
        assert await board.is_visible() and "root@bela.local offline" in await board.text_content()
        assert await board.get_attribute("title") == "cannot reach root@bela.local"
        await page.screenshot(path=shot("panel-busy"))
        (ARTIFACTS / "panel-busy.json").write_text(json.dumps({"cpu_samples_fed_and_rebuild_seconds": elapsed}))
        assert not problems, problems
    finally:
        service.stop()


async def test_board_estimate_is_its_own_mark_and_worded_as_an_estimate(browser, tmp_path):
    """bench/estimate.py's figure: a separate hollow series in the latency chart (from history and
    live), a status line that says it is an estimate, and beside a board's timing, the ratio."""
    project = tmp_path / "estimate"
    cli("new", str(project), "--target", "host")
    from service.history import History
    store = History(project / "generated" / "history.sqlite")
    estimate = {"ms": 7.23, "instructions": 1051623, "deadline_ms": 23.2, "headroom": 0.689,
                "model": {"board": "BeagleBone Black (Bela)", "core": "Cortex-A8"}}
    build = store.start("bela", "vmfb", "save")
    store.update(build, state="done", bench={"latency_ms": {"min": 8, "median": 8.2, "p99": 9, "max": 9.8},
                                             "deadline_ms": 23.2, "ran_on": "emulator", "estimate": estimate})
    store.close()
    service = Service(project)
    try:
        page, problems = await open_panel(browser, service.url)
        await page.wait_for_function("belaIreePanel.state().estimatePoints >= 1", timeout=60000)
        await wait_state(page, "done")
        board = {"type": "bench", "build_id": 1000, "latency_ms": {"min": 9, "median": 9.5, "p99": 10, "max": 11},
                 "deadline_ms": 23.2, "ran_on": "board", "format": "vmfb",
                 "estimate": {**estimate, "measured_over_estimated": 9.5 / 7.23}}
        await page.evaluate(f"belaIreePanel.receive({json.dumps(board)})")
        assert await page.evaluate("belaIreePanel.state().estimatePoints") == 2
        text = await page.text_content(".bi-estimate")
        assert "estimate on BeagleBone Black (Bela): 7.23 ms" in text and "not a measurement" in text
        assert "measured/estimated 1.31" in text
        assert "board estimate" in await page.text_content(".bi-latency")   # its own legend entry
        await page.screenshot(path=shot("panel-estimate"))
        assert not problems, problems
    finally:
        service.stop()


async def test_panel_plots_the_block_size_trade_off(browser, tmp_path):
    """After a build, the service times the model at Bela's usual periods (bench --blocks, in the
    background) and the panel plots each block's share and the latency its glue adds."""
    project = tmp_path / "blocks"
    cli("new", str(project), "--target", "host")
    service = Service(project, tune=True)   # background measuring on, as users run it
    try:
        page, problems = await open_panel(browser, service.url)
        await page.wait_for_function("belaIreePanel.state().blockPoints >= 4", timeout=180000)
        rows = page.locator(".bi-blocks-table tr")
        assert await rows.count() == 4
        texts = [await rows.nth(i).text_content() for i in range(4)]
        assert [t.split(" frames")[0] for t in texts] == ["16", "32", "64", "128"]
        # the starter takes microseconds here: inside render() at every block, nothing added
        assert all("in render()" in t and "+0 samples" in t for t in texts), texts
        assert await page.locator(".bi-blocks canvas").count() >= 1
        assert "% of the block" in await page.text_content(".bi-blocks")
        await page.screenshot(path=shot("panel-blocks"))
        # the trade-off is no build figure: a blocks message adds no point to the latency chart
        other = {"type": "bench", "build_id": 999, "phase": "blocks", "latency_ms": {"min": 1, "median": 1, "p99": 1,
                 "max": 1}, "deadline_ms": 2.9, "blocks": [{"block": 128, "estimate_ms": 1.37, "deadline_ms": 2.9,
                 "share": 0.47, "glue": "render", "latency_samples": 0}], "blocks_note": "fixed block: only 128"}
        # fed and read in one synchronous script: no message from the service can land in between
        after = await page.evaluate(f"""() => {{ const points = belaIreePanel.state().latencyPoints;
            belaIreePanel.receive({json.dumps(other)});
            return [{{...belaIreePanel.state(), before: points}},
                    document.querySelector('.bi-blocks-note').textContent]; }}""")
        assert after[0]["latencyPoints"] == after[0]["before"] and after[0]["blockPoints"] == 1
        assert after[1] == "fixed block: only 128"
        assert not problems, problems
    finally:
        service.stop()
