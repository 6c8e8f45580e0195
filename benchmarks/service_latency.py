"""Save-to-event latency of a warm `bela-iree serve` (the rebuild loop's speed targets).

    .venv/bin/python benchmarks/service_latency.py [--saves 20]

Creates a project from the zoo's basic_mlp (host target), starts the real service, waits until
it is warm, then: N saves that change the model (a different output scale each time, so no
cache can answer), timing save -> `done` and save -> first `bench`; and N saves that do not
change it (a touch, an identical write, a comment), timing save -> `unchanged`. Writes
benchmarks/service_latency.md.
"""
from __future__ import annotations

import argparse
import asyncio
import os
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

MODEL_LINE = "        return self.layers(x)"


async def measure(saves: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "basic_mlp"
        new_project(project, "basic_mlp", "vmfb", "host")
        model = project / "model.py"
        original = model.read_text()
        service = Service(project)
        try:
            client = await Client.connect(service)
            await client.build_finished(timeout=300)
            await asyncio.sleep(3)  # the warm-up build's fuller measurement
            done_s, bench_s, unchanged_s = [], [], []
            for i in range(saves):
                mark = len(client.messages)
                started = time.perf_counter()
                model.write_text(original.replace(MODEL_LINE, f"{MODEL_LINE} * {1 + (i + 1) / 1000}"))
                done = await client.wait_for(lambda m: m["type"] == "build" and m["state"] in ("done", "failed"), after=mark)
                assert done["state"] == "done", done
                done_s.append(arrived(client, done) - started)
                bench = await client.wait_for(lambda m: m["type"] == "bench" and m["build_id"] == done["id"], after=mark)
                bench_s.append(arrived(client, bench) - started)
                await client.wait_for(lambda m: m["type"] == "bench" and m.get("phase") == "full", after=mark)
            changes = [lambda t: t, lambda t: t + f"\n# note {time.time()}\n", None]
            for i in range(saves):
                mark = len(client.messages)
                started = time.perf_counter()
                change = changes[i % 3]
                if change is None:
                    os.utime(model)
                else:
                    model.write_text(change(model.read_text()))
                unchanged = await client.wait_for(lambda m: m["type"] == "unchanged", after=mark, timeout=10)
                unchanged_s.append(arrived(client, unchanged) - started)
            await client.close()
        finally:
            service.stop()
    return {"done": done_s, "bench": bench_s, "unchanged": unchanged_s}


def arrived(client: Client, message: dict) -> float:
    return client.arrival[next(i for i, m in enumerate(client.messages) if m is message)]


def table(results: dict) -> str:
    rows = [("save (model changed) -> `done`", results["done"], 1.5),
            ("save (model changed) -> first latency figure", results["bench"], 2.5),
            ("save (model unchanged) -> recognised, no rebuild", results["unchanged"], 0.1)]
    lines = [f"# bela-iree serve: save-to-event latency ({date.today()})", "",
             f"basic_mlp, host target, warm service, {len(results['done'])} saves each; seconds.", "",
             "| event | median | p90 | max | target (median) | met |", "| --- | --- | --- | --- | --- | --- |"]
    for name, values, target in rows:
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.3f} | {p90:.3f} | {max(values):.3f} | {target} | {'yes' if median <= target else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=20)
    args = parser.parse_args()
    results = asyncio.run(measure(args.saves))
    text = table(results)
    (HERE / "service_latency.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
