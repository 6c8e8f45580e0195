/*
 * The bela-iree panel: live build status, latency and CPU charts, dispatches, peers and log.
 *
 *   BelaIree.createPanel(target, {service: "http://127.0.0.1:8765", ide: socketOrNull}) -> {destroy()}
 *
 * One factory, one small view per concern (status, latency, distribution, cpu, dispatches,
 * peers, log). It talks to `bela-iree serve` over /ws (contract: docs/design.md) and reconnects by
 * itself. Charts are uPlot, served by the service from its own node_modules: nothing comes from
 * the internet. Everything it shows is bounded (builds, CPU samples, log lines) so an hour of
 * samples or a thousand builds stay cheap.
 */
(function () {
  "use strict";

  const MAX_BUILDS = 1000;
  const MAX_CPU_SAMPLES = 3600;
  const MAX_LOG_LINES = 500;
  const STAGES = ["queued", "exporting", "compiling", "benchmarking", "done"];
  const FAILED_STAGE = { export: "exporting", compile: "compiling", benchmarking: "benchmarking", board: "benchmarking" };

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function formatMs(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
    return ms >= 100 ? ms.toFixed(0) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3);
  }

  // The Bela IDE's CPU figure from its `cpu-usage` event, computed as the IDE's toolbar does
  // (Xenomai 3 /proc/xenomai/sched/stat: CPU PID MSW CSW XSC PF STAT %CPU NAME): the sum of
  // every real-time thread's %CPU except [ROOT] and the IRQ line, plus Linux's share of ROOT;
  // mode switches are those of the audio thread beyond its one normal switch.
  function parseIdeCpu(data) {
    if (!data || typeof data.bela !== "string") return null;
    let total = 0, rootShare = 1, msw;
    for (const line of data.bela.split("\n")) {
      const cols = line.split(" ").filter(Boolean);
      if (cols.length < 9) continue;
      const name = cols[8], cpu = parseFloat(cols[7]);
      if (name === "[ROOT]") { rootShare = cpu * 0.01; continue; }
      if (name === "NAME" || name === "[IRQ16:") continue;
      if (name === "bela-audio") msw = parseInt(cols[2], 10) - 1;
      if (!Number.isNaN(cpu)) total += cpu;
    }
    if (data.belaLinux) total += data.belaLinux * rootShare;
    return { percent: total, msw };
  }

  // ---- views --------------------------------------------------------------------------------

  function statusView(root) {
    const box = element("section", "bi-status");
    let last = null;
    const line = element("div", "bi-status-line");
    const stages = element("ol", "bi-stages");
    const error = element("div", "bi-error");
    const verdict = element("div", "bi-verdict");
    const estimate = element("div", "bi-estimate");
    box.append(line, stages, verdict, estimate, error);
    root.append(box);
    return {
      last() { return last; },
      build(message) {
        last = { id: message.id, state: message.state };
        line.textContent = `build ${message.id} · ${message.target} · ${message.state}`;
        box.dataset.state = message.state;
        stages.replaceChildren(...STAGES.map((stage) => {
          const item = element("li", "bi-stage");
          const seconds = message.stages && message.stages[stage];
          item.textContent = seconds !== undefined ? `${stage} ${seconds.toFixed(2)} s` : stage;
          const reached = STAGES.indexOf(message.state);
          const failedAt = message.state === "failed" && message.error && FAILED_STAGE[message.error.stage];
          item.dataset.state = stage === failedAt ? "failed" : stage === message.state ? "current"
            : (reached > STAGES.indexOf(stage) || seconds !== undefined) ? "passed" : "waiting";
          return item;
        }));
        if (message.state === "failed" && message.error) {
          const e = message.error;
          const where = e.file ? `${e.file.split("/").pop()}${e.line ? ":" + e.line : ""}` : "";
          error.replaceChildren(
            element("div", "bi-error-where", `${e.stage} failed${where ? " at " + where : ""}`),
            element("pre", "bi-error-message", e.message),
            ...(e.hint ? [element("div", "bi-error-hint", e.hint)] : []));
          error.hidden = false;
        } else if (message.state !== "cancelled") {
          error.hidden = true;
        }
        if (message.state !== "done") { verdict.textContent = ""; estimate.textContent = ""; }
      },
      bench(message) {
        // the verdict is worded by the service (bench/bench.py fit_verdict); only history rows
        // stored before it sent one lack it, and get the numbers without a verdict
        const text = message.verdict
          || `${formatMs(message.latency_ms.median)} ms for a ${formatMs(message.deadline_ms)} ms block`;
        const flags = message.variant && message.variant !== "default" ? `, IREE flags: ${message.variant}` : "";
        const what = `${message.format || "vmfb"}${flags}`;   // the format measured: vmfb or emitc
        // no board: the verdict is the estimate from counted work (bench.py fit_verdict); the
        // emulator's wall time is said apart, on the estimate's line
        const estimated = isEstimateHeadline(message);
        const where = estimated ? ` (${what}, counted on an emulated ${message.emulated_cpu || "core"})`
          : message.ran_on === "emulator" ? ` (${what}, emulated ${message.emulated_cpu || ""}, not a board timing)`
          : ` (${what}, on ${message.ran_on})`;
        // where the glue runs the model (service/glue_choice.py) and what it adds, and, for a
        // stateful model, its streaming check: K blocks in a row against PyTorch, state carried
        const glue = message.glue === "render" ? "in render()" : "on the auxiliary task";
        const latency = message.glue
          ? `; glue ${glue}: ${message.latency_samples} samples latency`
          : message.latency_samples ? `; glue latency ${message.latency_samples} samples` : "";
        const stream = message.streaming
          ? `; ${message.streaming.blocks} blocks streamed, max error ${message.streaming.max_abs_err.toPrecision(2)}`
          : "";
        verdict.textContent = `${text}${where}${latency}${stream}`;
        estimate.textContent = estimated ? emulatedText(message) : estimateText(message.estimate);
        if (message.verdict) verdict.dataset.fits = String(/^(estimated on [^:]*: )?fits:/.test(message.verdict));
        else delete verdict.dataset.fits;
      },
    };
  }

  // A board target with no board: the estimate is the figure that counts (bench.py headline_is_estimate).
  function isEstimateHeadline(message) {
    return message.ran_on === "emulator" && !!message.estimate && message.estimate.ms !== undefined;
  }

  // Beside an estimate headline: how the counted call splits, and the emulator's wall time for what it is.
  function emulatedText(message) {
    const e = message.estimate;
    const split = e.runtime_instructions !== undefined
      ? `${e.instructions.toLocaleString("en")} instructions per call: ${e.kernel_instructions.toLocaleString("en")} in the kernels, ${e.runtime_instructions.toLocaleString("en")} in IREE's runtime (${e.dispatches} dispatches). `
      : "";
    return `${split}Emulator wall time ${formatMs(message.latency_ms.median)} ms (qemu on this machine, not a board timing, not the verdict)`;
  }

  // The board estimate (bench/estimate.py): always worded as an estimate, never as a timing;
  // beside a board's measurement, how far off it was.
  function estimateText(e) {
    if (!e) return "";
    if (e.error) return `no board estimate: ${e.error}`;
    const fit = e.deadline_ms ? ` of ${formatMs(e.deadline_ms)} ms (${(100 * e.headroom).toFixed(1)} % headroom)` : "";
    const ratio = e.measured_over_estimated !== undefined ? ` · measured/estimated ${e.measured_over_estimated.toFixed(2)}` : "";
    return `estimate on ${e.model.board}: ${formatMs(e.ms)} ms${fit}, from ${(e.instructions / 1e6).toFixed(3)} M instructions counted on an emulated ${e.model.core} (an estimate, not a measurement)${ratio}`;
  }

  function chartSize(container, height) {
    return { width: Math.max(240, container.clientWidth || 320), height };
  }

  function latencyView(root) {
    const box = element("section", "bi-latency");
    box.append(element("h3", null, "latency per build (ms)"));
    const holder = element("div", "bi-chart");
    box.append(holder);
    root.append(box);
    const builds = new Map();  // id -> {median, p99, deadline, estimate}
    let plot = null;
    function data() {
      const ids = [...builds.keys()].sort((a, b) => a - b).slice(-MAX_BUILDS);
      return [ids, ids.map((id) => builds.get(id).median), ids.map((id) => builds.get(id).p99),
        ids.map((id) => builds.get(id).deadline), ids.map((id) => builds.get(id).estimate),
        ids.map((id) => builds.get(id).emulated)];
    }
    // With no board the estimate is the headline series ("per call"); the emulator's wall time
    // is kept apart as hollow marks. With a board (or on the host) the measured median is.
    function point(bench) {
      const e = bench.estimate && bench.estimate.ms !== undefined ? bench.estimate.ms : null;
      if (isEstimateHeadline(bench)) {
        return { median: e, p99: null, deadline: bench.deadline_ms, estimate: e, emulated: bench.latency_ms.median };
      }
      return { median: bench.latency_ms.median, p99: bench.latency_ms.p99, deadline: bench.deadline_ms, estimate: e,
        emulated: null };
    }
    function draw() {
      if (typeof uPlot === "undefined") return;
      if (!plot) {
        plot = new uPlot({
          ...chartSize(holder, 180),
          // log scale: a 0.02 ms median and a 23 ms deadline both stay readable
          scales: { x: { time: false }, y: { distr: 3 } },
          axes: [{ label: "build", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, {}],
          series: [{ label: "build" },
            { label: "per call (median; board estimate without a board)", stroke: "#2a7ae2", width: 2,
              points: { show: true } },
            { label: "p99", stroke: "#e2a72a", width: 1, points: { show: true } },
            { label: "deadline", stroke: "#d33", width: 1, dash: [6, 4], points: { show: false } },
            // an estimate, not a measurement: hollow rings, no line joining them
            { label: "board estimate", stroke: "#1a9a6a", width: 0, paths: () => null,
              points: { show: true, size: 10, width: 2, fill: "#fff", stroke: "#1a9a6a" } },
            // qemu's wall time on this machine: shown for what it is, never the figure
            { label: "emulator wall time", stroke: "#999", width: 0, paths: () => null,
              points: { show: true, size: 6, width: 1, fill: "#fff", stroke: "#999" } }],
        }, data(), holder);
      } else {
        plot.setData(data());
      }
    }
    return {
      history(rows) {
        for (const row of rows) {
          if (row.latency_ms) builds.set(row.id, point({ ...row, estimate: row.bench && row.bench.estimate }));
        }
        draw();
      },
      bench(message) {
        builds.set(message.build_id, point(message));
        draw();
      },
      points() { return builds.size; },
      estimatePoints() { return [...builds.values()].filter((b) => b.estimate !== null).length; },
      resize() { if (plot) plot.setSize(chartSize(holder, 180)); },
      destroy() { if (plot) plot.destroy(); },
    };
  }

  // The latency / CPU trade-off per block size (bench --blocks, service/bench/blocks.py): each
  // block's time per call as a share of the block (left axis) and the latency the glue adds
  // (right axis, samples), and a row per block saying where the glue runs the model.
  function blocksView(root) {
    const box = element("section", "bi-blocks");
    box.append(element("h3", null, "block size trade-off"));
    const note = element("div", "bi-blocks-note");
    const holder = element("div", "bi-chart");
    const table = element("table", "bi-blocks-table");
    box.append(note, holder, table);
    box.hidden = true;
    root.append(box);
    let rows = [];
    let plot = null;
    function data() {
      return [rows.map((r) => r.block), rows.map((r) => (r.share === null ? null : 100 * r.share)),
        rows.map((r) => r.latency_samples)];
    }
    function draw() {
      if (typeof uPlot === "undefined" || !rows.length) return;
      if (plot) { plot.setData(data()); return; }
      plot = new uPlot({
        ...chartSize(holder, 160),
        scales: { x: { time: false, distr: 3, log: 2 }, share: {}, samples: {} },
        axes: [{ label: "block (frames)", values: (u, ticks) => ticks.map(String) },
          { scale: "share", label: "% of the block" },
          { scale: "samples", label: "latency (samples)", side: 1, size: 70, grid: { show: false } }],
        series: [{ label: "block" },
          { label: "% of the block", scale: "share", stroke: "#2a7ae2", width: 2, points: { show: true } },
          { label: "latency added (samples)", scale: "samples", stroke: "#d33", width: 1, dash: [6, 4],
            points: { show: true } }],
      }, data(), holder);
    }
    return {
      bench(message) {
        rows = message.blocks || [];
        box.hidden = !rows.length;
        note.textContent = message.blocks_note || "";
        table.replaceChildren(...rows.map((r) => {
          const tr = element("tr");
          const share = r.share === null ? "?" : `${(100 * r.share).toFixed(0)} %`;
          const where = r.glue === "render" ? "in render()" : "aux task";
          tr.append(element("td", null, `${r.block} frames`), element("td", null, share), element("td", null, where),
            element("td", null, `+${r.latency_samples} samples`));
          tr.dataset.glue = r.glue;
          return tr;
        }));
        draw();
      },
      points() { return rows.length; },
      resize() { if (plot) plot.setSize(chartSize(holder, 160)); },
      destroy() { if (plot) plot.destroy(); },
    };
  }

  function distributionView(root) {
    const box = element("section", "bi-distribution");
    box.append(element("h3", null, "this build's calls (ms)"));
    const bars = element("div", "bi-histogram");
    const summary = element("div", "bi-summary");
    box.append(bars, summary);
    root.append(box);
    return {
      bench(message) {
        const l = message.latency_ms;
        summary.textContent = `min ${formatMs(l.min)} · median ${formatMs(l.median)} · p99 ${formatMs(l.p99)} · max ${formatMs(l.max)} · ${message.samples || "?"} calls`;
        const histogram = message.histogram;
        if (!histogram) { bars.replaceChildren(); return; }
        const most = Math.max(1, ...histogram.counts);
        bars.replaceChildren(...histogram.counts.map((count, i) => {
          const bar = element("div", "bi-bar");
          bar.style.height = `${Math.max(1, (100 * count) / most)}%`;
          bar.title = `${formatMs(histogram.edges[i])}–${formatMs(histogram.edges[i + 1])} ms: ${count} calls`;
          return bar;
        }));
      },
    };
  }

  function cpuView(root) {
    const box = element("section", "bi-cpu");
    const title = element("h3", null, "CPU (%)");
    const holder = element("div", "bi-chart");
    box.append(title, holder);
    root.append(box);
    const columns = [[], [], []];  // t, percent, mode switches
    let plot = null;
    let pending = false;
    function draw() {
      pending = false;
      if (typeof uPlot === "undefined") return;
      if (!plot) {
        plot = new uPlot({
          ...chartSize(holder, 140),
          scales: { y: { range: [0, 100] } },
          series: [{}, { label: "cpu %", stroke: "#3a3", width: 1, fill: "rgba(60,170,60,0.12)" },
            { label: "mode switches", stroke: "#a3a", width: 1, scale: "msw" }],
          axes: [{}, {}, { scale: "msw", side: 1, grid: { show: false } }],
        }, columns, holder);
      } else {
        plot.setData(columns);
      }
    }
    return {
      sample(message) {
        columns[0].push(message.t);
        columns[1].push(message.percent);
        columns[2].push(message.msw === undefined ? null : message.msw);
        if (columns[0].length > MAX_CPU_SAMPLES) columns.forEach((c) => c.splice(0, c.length - MAX_CPU_SAMPLES));
        title.textContent = `CPU (%) · ${message.source}${message.label ? " · " + message.label : ""}`;
        if (!pending) { pending = true; requestAnimationFrame(draw); }  // one redraw per frame at most
      },
      samples() { return columns[0].length; },
      resize() { if (plot) plot.setSize(chartSize(holder, 140)); },
      destroy() { if (plot) plot.destroy(); },
    };
  }

  function dispatchesView(root) {
    const box = element("section", "bi-dispatches");
    const title = element("h3", null, "where the time goes");
    box.append(title);
    const table = element("table");
    const peers = element("table", "bi-peers");
    box.append(table, peers);
    root.append(box);
    return {
      bench(message) {
        // without a board, each dispatch's instructions counted on the emulated core (its
        // kernel's, and its share of IREE's runtime) and their estimate (bench/estimate.py)
        const counted = (message.dispatches || []).some((d) => d.instructions !== undefined);
        title.textContent = counted ? "where the time goes (instructions counted on the emulated core)" : "where the time goes";
        table.replaceChildren(...(message.dispatches || []).slice(0, 12).map((d) => {
          const row = element("tr");
          const percent = counted ? d.estimate_percent : d.percent;
          const bar = element("div", "bi-share");
          bar.style.width = `${Math.min(100, percent || 0)}%`;
          const share = element("td", "bi-share-cell");
          share.append(bar);
          const figure = counted
            ? `${(d.instructions || 0).toLocaleString("en")} kernel + ${(d.runtime_instructions || 0).toLocaleString("en")} runtime instructions, ${formatMs(d.estimate_ms)} ms est.`
            : `${formatMs(d.ms)} ms`;
          row.append(element("td", "bi-dispatch", d.name), element("td", null, figure), share,
            element("td", null, `${(percent || 0).toFixed(1)} %`));
          return row;
        }));
        const entries = Object.entries(message.peers || {});
        peers.replaceChildren(...(entries.length ? [element("tr", null, "")] : []), ...entries.map(([name, figures]) => {
          const row = element("tr");
          row.append(element("td", null, name), element("td", null, figures.median_ms !== undefined
            ? `${formatMs(figures.median_ms)} ms (ours ${figures.ours_speedup >= 1 ? figures.ours_speedup.toFixed(2) + "x faster" : (1 / figures.ours_speedup).toFixed(2) + "x slower"})`
            : `failed: ${figures.error}`));
          return row;
        }));
      },
    };
  }

  function logView(root) {
    const box = element("section", "bi-log");
    box.append(element("h3", null, "log"));
    const pre = element("pre");
    box.append(pre);
    root.append(box);
    const lines = [];
    return {
      line(text) {
        lines.push(text);
        if (lines.length > MAX_LOG_LINES) lines.splice(0, lines.length - MAX_LOG_LINES);
        pre.textContent = lines.join("\n");
        pre.scrollTop = pre.scrollHeight;
      },
    };
  }

  // The program on the board (serve --board, service/board/player.py): restarted or swapped,
  // which build it plays and since when, its overruns, the board's own compiler errors.
  function programView(root) {
    const box = element("section", "bi-program");
    box.hidden = true;
    const line = element("div", "bi-program-line");
    const figures = element("div", "bi-program-figures");
    const errors = element("ol", "bi-program-errors");
    box.append(line, figures, errors);
    root.append(box);
    const clock = (date) => date.toTimeString().slice(0, 8);
    let since = {};   // build id -> when it started playing, as this panel saw it
    return {
      board(message) {
        if (!message.program && !message.status) return;
        box.hidden = false;
        const status = message.status || {};
        const model = status.model || {};
        const build = message.playing;
        if (message.program === "playing" && build !== undefined && !since[build]) since[build] = new Date();
        // the program's own word (its status file) wins over when this panel heard of it
        const from = model.build === build && model.since ? new Date(model.since) : since[build];
        const how = message.swapped ? "swapped live" : message.restarted ? "restarted" : "";
        const text = {
          building: `board: building and starting build ${message.build_id}`,
          swapping: `board: build ${message.build_id} sent, waiting for the program to swap it in`
            + (build !== undefined && build !== null ? ` (playing build ${build})` : ""),
          playing: `playing build ${build}${from ? " since " + clock(from) : ""}${how ? " (" + how + ")" : ""}`,
          build_failed: "board: the program did not build",
          stopped: "board: the program is not running",
        }[message.program] || (status.running ? `playing build ${model.build}` : "board: no program running");
        line.textContent = text;
        box.dataset.state = message.program || (status.running ? "playing" : "stopped");
        const parts = [];
        if (status.glue) parts.push(`glue ${status.glue}, ${status.latency_samples} samples latency`);
        if (status.swaps !== undefined && status.swaps !== null) parts.push(`${status.swaps} swaps`);
        if (status.overruns !== undefined && status.overruns !== null) parts.push(`${status.overruns} overruns`);
        if (status.last_error) parts.push(`last error: ${status.last_error}`);
        figures.textContent = parts.join(" · ");
        figures.dataset.overruns = String(Boolean(status.overruns));
        errors.replaceChildren(...(message.errors || []).map((e) => element("li", "bi-program-error",
          `${e.file ? e.file + (e.line ? ":" + e.line : "") + ": " : ""}${e.message}`)));
      },
    };
  }

  function controlsView(root, send) {
    const bar = element("header", "bi-header");
    const title = element("strong", null, "bela-iree");
    const project = element("span", "bi-project");
    const connection = element("span", "bi-connection", "connecting");
    const board = element("span", "bi-board");   // with --board: its address, online or offline
    board.hidden = true;
    const select = element("select", "bi-target");
    select.title = "target board";
    const rebuild = element("button", "bi-rebuild", "rebuild");
    select.addEventListener("change", () => send({ type: "set_target", target: select.value }));
    rebuild.addEventListener("click", () => send({ type: "rebuild" }));
    bar.append(title, project, connection, board, select, rebuild);
    root.append(bar);
    return {
      hello(message) {
        project.textContent = message.project;
        select.replaceChildren(...message.targets.map((t) => {
          const option = element("option", null, t);
          option.value = t;
          return option;
        }));
        select.value = message.target;
        board.hidden = !message.board;
        if (message.board) board.textContent = `board ${message.board}`;
      },
      board(message) {
        board.hidden = false;
        board.textContent = `board ${message.address} ${message.state}`;
        board.dataset.state = message.state;
        board.title = message.message || "";
      },
      target(name) { select.value = name; },
      connection(state) { connection.textContent = state; connection.dataset.state = state; },
    };
  }

  // ---- the panel ----------------------------------------------------------------------------

  function createPanel(target, options) {
    options = options || {};
    const service = (options.service || window.location.origin).replace(/\/$/, "");
    const root = element("div", "bela-iree-panel");
    target.append(root);
    let socket = null;
    let retry = 500;
    let closed = false;
    let timer = null;

    const send = (message) => { if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message)); };
    const controls = controlsView(root, send);
    const program = programView(root);
    const status = statusView(root);
    const latency = latencyView(root);
    const distribution = distributionView(root);
    const blocks = blocksView(root);
    const cpu = cpuView(root);
    const dispatches = dispatchesView(root);
    const log = logView(root);
    const handlers = {
      hello: (m) => controls.hello(m),
      history: (m) => {
        latency.history(m.builds);
        const last = m.builds[0];
        if (last) status.build({ ...last, id: last.id, state: last.state, stages: last.stages || {} });
        if (last && last.bench) { status.bench(last.bench); distribution.bench(last.bench); dispatches.bench(last.bench); }
      },
      build: (m) => { status.build(m); controls.target(m.target); },
      bench: (m) => {
        if (m.phase === "blocks") { blocks.bench(m); return; }   // the trade-off, not another build figure
        status.bench(m); latency.bench(m); distribution.bench(m); dispatches.bench(m);
      },
      board: (m) => { controls.board(m); program.board(m); },
      cpu: (m) => cpu.sample(m),
      log: (m) => log.line(m.line),
      unchanged: (m) => log.line(`${m.files.join(", ")}: saved, model unchanged (${(1000 * m.seconds).toFixed(1)} ms)`),
      error: (m) => log.line(`service: ${m.message}`),
    };

    function receive(message) {
      const handle = handlers[message.type];
      if (handle) handle(message);
    }

    function connect() {
      controls.connection("connecting");
      socket = new WebSocket(service.replace(/^http/, "ws") + "/ws");
      socket.onopen = () => { retry = 500; controls.connection("connected"); };
      socket.onmessage = (event) => receive(JSON.parse(event.data));
      socket.onclose = () => {
        if (closed) return;
        controls.connection("disconnected: retrying");
        timer = setTimeout(connect, retry);
        retry = Math.min(retry * 2, 5000);  // back off, but come back quickly after a restart
      };
    }

    // Inside the Bela IDE: its own socket.io events, shown beside ours.
    if (options.ide) {
      options.ide.on("status", (status) => {
        if (status && (status.running !== undefined || status.building !== undefined))
          log.line(`Bela IDE: ${status.building ? "building" : status.running ? "running " + (status.runningProject || "") : "stopped"}`);
      });
      options.ide.on("cpu-usage", (data) => {
        const figures = parseIdeCpu(data);
        if (figures) cpu.sample({ t: Date.now() / 1000, percent: figures.percent, msw: figures.msw, source: "board", label: "Bela IDE" });
      });
    }

    const onResize = () => { latency.resize(); cpu.resize(); blocks.resize(); };
    window.addEventListener("resize", onResize);
    connect();
    return {
      destroy() {
        closed = true;
        clearTimeout(timer);
        if (socket) socket.close();
        window.removeEventListener("resize", onResize);
        latency.destroy();
        cpu.destroy();
        blocks.destroy();
        root.remove();
      },
      receive,  // feed a message as if the service had sent it (embedding, tests)
      state() {
        return { latencyPoints: latency.points(), estimatePoints: latency.estimatePoints(), cpuSamples: cpu.samples(),
          blockPoints: blocks.points(),
          lastBuild: status.last() };
      },
    };
  }

  window.BelaIree = { createPanel, parseIdeCpu };
})();
