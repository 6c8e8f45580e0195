"""Save-to-event latency of a warm `bela-iree serve`, on a quiet service and a busy one.

    .venv/bin/python benchmarks/service_latency.py [--saves 8]

Creates a project from the zoo's basic_mlp (host target), starts the real service with flag
tuning on (as users run it), waits until it is warm, then times save -> `done`:

- quiet: each save lands once the service has finished measuring the previous model's flag
  variants;
- busy: each save lands BUSY_AFTER seconds after the previous `done`, while those variants are
  still being measured (a save must preempt them, docs/design.md "The rebuild loop");
- unchanged: saves that do not change the model (a touch, an identical write, a comment) ->
  `unchanged`.

Every changing save gives the hidden layers a size never built before (and a fresh constant),
so neither the export nor the compile cache can answer. Writes benchmarks/service_latency.md.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from tests.service_helpers import Client, Service  # noqa: E402  (the same real service and client as the tests)
from service.project import new_project  # noqa: E402

BUSY_AFTER = 3.0
HIDDEN = """            nn.Linear(size, size), nn.Tanh(),
            nn.Linear(size, size), nn.Tanh(),
            nn.Linear(size, size),"""


def model_source(original: str, hidden: int, scale: float) -> str:
    """basic_mlp with hidden layers of `hidden` units and its output scaled by `scale`."""
    layers = (f"            nn.Linear(size, {hidden}), nn.Tanh(),\n"
              f"            nn.Linear({hidden}, {hidden}), nn.Tanh(),\n"
              f"            nn.Linear({hidden}, size),")
    return original.replace(HIDDEN, layers).replace("return self.layers(x)", f"return self.layers(x) * {scale}")


class Session:
    def __init__(self, client: Client, model: Path, original: str):
        self.client, self.model, self.original = client, model, original
        self.sizes = random.Random(time.time_ns()).sample(range(200, 1800), 200)   # never the same twice

    def done(self, after: int):
        return self.client.wait_for(lambda m: m["type"] == "build" and m["state"] in ("done", "failed"),
                                    after=after, timeout=300)

    async def save_changed(self) -> tuple[float, dict]:
        mark = len(self.client.messages)
        started = time.perf_counter()
        self.model.write_text(model_source(self.original, self.sizes.pop(), 1 + time.time_ns() % 10**6 / 10**9))
        done = await self.done(mark)
        assert done["state"] == "done", done
        return arrived(self.client, done) - started, done

    async def tuning_finished(self, build_id: int) -> None:
        """Until the variants of this build's model are measured (and a faster-flags rebuild is done)."""
        mark = len(self.client.messages)
        line = await self.client.wait_for(lambda m: m["type"] == "log" and m["build_id"] == build_id
                                          and m["line"].startswith("flag variants:"), timeout=300)
        if not line["line"].endswith("-> default"):
            await self.done(mark)
        await asyncio.sleep(0.5)


async def measure(saves: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "basic_mlp"
        new_project(project, "basic_mlp", "vmfb", "host")
        model = project / "model.py"
        original = model.read_text()
        assert HIDDEN in original
        service = Service(project, tune=True)
        try:
            client = await Client.connect(service)
            first = await client.build_finished(timeout=300)
            session = Session(client, model, original)
            await session.tuning_finished(first["id"])
            quiet, busy, unchanged, stages = [], [], [], []
            for _ in range(saves):
                seconds, done = await session.save_changed()
                quiet.append(seconds)
                stages.append(done.get("stages", {}))
                await session.tuning_finished(done["id"])
            for _ in range(saves):
                seconds, done = await session.save_changed()
                busy.append(seconds)
                await asyncio.sleep(BUSY_AFTER)   # the variants of this model are being measured now
            changes = [lambda t: t, lambda t: t + f"\n# note {time.time()}\n", None]
            for i in range(saves):
                await asyncio.sleep(0.5)
                mark = len(client.messages)
                started = time.perf_counter()
                change = changes[i % 3]
                if change is None:
                    os.utime(model)
                else:
                    model.write_text(change(model.read_text()))
                message = await client.wait_for(lambda m: m["type"] == "unchanged", after=mark, timeout=30)
                unchanged.append(arrived(client, message) - started)
            await client.close()
        finally:
            service.stop()
    return {"quiet": quiet, "busy": busy, "unchanged": unchanged, "stages": stages}


def arrived(client: Client, message: dict) -> float:
    return client.arrival[next(i for i, m in enumerate(client.messages) if m is message)]


def table(results: dict) -> str:
    rows = [("save (new layer sizes) -> `done`, quiet service", results["quiet"], 1.0),
            (f"save (new layer sizes) -> `done`, {BUSY_AFTER:g} s after the last build, while tuning",
             results["busy"], 1.5),
            ("save (model unchanged) -> recognised, no rebuild", results["unchanged"], 0.1)]
    lines = [f"# bela-iree serve: save-to-event latency ({date.today()})", "",
             f"basic_mlp (hidden layers resized on every save), host target, flag tuning on, warm service, "
             f"{len(results['quiet'])} saves each; seconds. Written by benchmarks/service_latency.py.", "",
             "| event | median | p90 | max | target (median) | met |", "| --- | --- | --- | --- | --- | --- |"]
    for name, values, target in rows:
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.3f} | {p90:.3f} | {max(values):.3f} | {target} | "
                     f"{'yes' if median <= target else 'no'} |")
    stages = results.get("stages") or []
    if stages:   # where a quiet save's time goes (the build message's stage timings)
        names = [n for n in ("exporting", "compiling", "benchmarking") if all(n in s for s in stages)]
        lines += ["", "Where a quiet save's time goes (median of the build's stage timings, seconds): " +
                  ", ".join(f"{n} {statistics.median(s[n] for s in stages):.3f}" for n in names) + "."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=8)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results = asyncio.run(measure(args.saves))
    text = table(results) + (f"\nMachine load (1-minute average) before / after: {load_before:.1f} / "
                             f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.\n")
    (HERE / "service_latency.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
