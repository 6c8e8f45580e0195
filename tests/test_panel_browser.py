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


async def test_without_a_board_the_estimate_is_the_headline_and_dispatches_are_counted(browser, tmp_path):
    """A board target with no board: the verdict and the latency chart's main series are the
    estimate, the emulator's wall time is its own grey series and said for what it is, and "where
    the time goes" lists each dispatch's counted instructions (kernel and runtime share)."""
    project = tmp_path / "counted"
    cli("new", str(project), "--target", "host")
    service = Service(project)
    try:
        page, problems = await open_panel(browser, service.url)
        await wait_state(page, "done")
        estimate = {"ms": 0.0177, "instructions": 19427, "kernel_instructions": 3126, "runtime_instructions": 16301,
                    "dispatches": 2, "deadline_ms": 0.363, "headroom": 0.951,
                    "model": {"board": "PocketBeagle 2 (Bela Gem)", "core": "Cortex-A53"}}
        message = {"type": "bench", "build_id": 2000, "ran_on": "emulator", "emulated_cpu": "cortex-a53",
                   "format": "vmfb", "latency_ms": {"min": 0.07, "median": 0.0733, "p99": 0.09, "max": 0.1},
                   "deadline_ms": 0.363, "estimate": estimate,
                   "verdict": "estimated on PocketBeagle 2 (Bela Gem): fits: 0.0177 ms of 0.363 ms (95.1 % headroom) "
                              "(an estimate from counted work, not a measurement)",
                   "dispatches": [{"name": "main_dispatch_0_matmul_16x16x1_f32", "ms": None, "percent": None,
                                   "instructions": 2568, "runtime_instructions": 8150, "estimate_ms": 0.00957,
                                   "estimate_percent": 55.2}]}
        await page.evaluate(f"belaIreePanel.receive({json.dumps(message)})")
        verdict = await page.text_content(".bi-verdict")
        assert verdict.startswith("estimated on PocketBeagle 2 (Bela Gem): fits: 0.0177 ms") and "counted on an emulated" in verdict
        assert await page.get_attribute(".bi-verdict", "data-fits") == "true"
        beside = await page.text_content(".bi-estimate")
        assert "16,301 in IREE's runtime" in beside and "Emulator wall time 0.073 ms" in beside and "not the verdict" in beside
        legend = await page.text_content(".bi-latency")
        assert "emulator wall time" in legend and "board estimate without a board" in legend
        dispatches = await page.text_content(".bi-dispatches")
        assert "instructions counted on the emulated core" in dispatches
        assert "2,568 kernel + 8,150 runtime instructions" in dispatches
        await page.screenshot(path=shot("panel-counted"))
        assert not problems, problems
    finally:
        service.stop()


async def test_the_board_program_line_says_which_build_plays_since_when_and_the_boards_errors(browser, tmp_path):
    """`board` events as serve --board sends them (service/board/player.py): the program restarted
    with build 12, the status file's figures, a live swap, then a board build with compiler errors."""
    project = tmp_path / "program"
    cli("new", str(project), "--target", "host")
    service = Service(project)
    try:
        page, problems = await open_panel(browser, service.url)
        assert await page.is_hidden(".bi-program")   # no board: nothing shown
        base = {"type": "board", "state": "online", "address": "root@bela.local", "message": "connected"}
        status = {"running": True, "model": {"build": 12, "sha256": "ab" * 32, "since": "2026-12-07T10:42:03Z"},
                  "swaps": 0, "overruns": 3, "glue": "render", "latency_samples": 0, "last_error": None}
        for message in ({**base, "program": "building", "build_id": 12, "errors": []},
                        {**base, "program": "playing", "build_id": 12, "playing": 12, "restarted": True,
                         "swapped": False, "errors": [], "via": "ide", "status": status}):
            await page.evaluate(f"belaIreePanel.receive({json.dumps(message)})")
        offset = await page.evaluate("new Date('2026-12-07T10:42:03Z').getTimezoneOffset()")
        local = time.strftime("%H:%M:%S", time.gmtime(10 * 3600 + 42 * 60 + 3 - offset * 60))
        line = page.locator(".bi-program[data-state=playing] .bi-program-line")
        assert await line.text_content() == f"playing build 12 since {local} (restarted)"
        figures = await page.text_content(".bi-program-figures")
        assert "glue render, 0 samples latency" in figures and "3 overruns" in figures
        assert await page.get_attribute(".bi-program-figures", "data-overruns") == "true"

        swapped = {**base, "program": "playing", "build_id": 12, "playing": 13, "swapped": True, "restarted": False,
                   "errors": [], "via": "swap", "status": status}
        await page.evaluate(f"belaIreePanel.receive({json.dumps(swapped)})")
        assert (await line.text_content()).startswith("playing build 13 since ") and "(swapped live)" in await line.text_content()

        failed = {**swapped, "program": "build_failed", "via": "ide",
                  "errors": [{"file": "render.cpp", "line": 3, "message": "'gain' was not declared in this scope"}]}
        await page.evaluate(f"belaIreePanel.receive({json.dumps(failed)})")
        assert await page.text_content(".bi-program[data-state=build_failed] .bi-program-line") == "board: the program did not build"
        assert await page.text_content(".bi-program-error") == "render.cpp:3: 'gain' was not declared in this scope"
        await page.screenshot(path=shot("panel-board-program"))
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
