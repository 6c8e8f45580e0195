"""CPU seconds of one rebuild, the part of save -> `done` that other load cannot inflate.

    .venv/bin/python benchmarks/rebuild_cpu.py [--checkout DIR] [--rebuilds 7] [--seed 11]

What `serve` does on a save, in one process: basic_mlp's hidden layers resized (the sizes of
service_latency.py, drawn from --seed), exported here as the warm worker exports (torch already
imported), compiled for host, its quick figure measured (20 calls). Prints one JSON line per
rebuild: this process's CPU seconds for the build and the bench, their tools' (iree-compile,
iree-run-module, iree-benchmark-module), the total, and the wall time; then the medians (the first
rebuild, which warms torch.export, left out). On a quiet machine the wall time of a save is about
the total (the stages run one after another). --checkout measures another copy of bela-iree (run
it with that copy's Python), for a before / after on the same sizes.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--rebuilds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    sys.path[:0] = [str(args.checkout), str(args.checkout / "benchmarks")]
    import warnings
    warnings.simplefilter("ignore")
    from service.bench.bench import bench_compiled
    from service.pipeline.export import export_model
    from service.pipeline.targets import TARGETS
    from service.project import ProjectConfig, build_project, new_project
    from service_latency import model_source

    project = Path(tempfile.mkdtemp()) / "basic_mlp"
    os.environ["BELA_IREE_CACHE"] = str(project.parent / "cache")   # nothing cached from before
    own_block = {"block": 0} if "block" in inspect.signature(new_project).parameters else {}
    new_project(project, "basic_mlp", "vmfb", "host", **own_block)
    original = (project / "model.py").read_text()

    def exporter(model_file, out_dir, unroll_loops, timeout, **block):   # as the warm worker exports
        return export_model(model_file, out_dir, unroll_loops=unroll_loops, **block)

    options = ProjectConfig.load(project).compile_options(exporter=exporter)
    sizes = random.Random(args.seed)
    rows = []
    for _ in range(args.rebuilds):
        (project / "model.py").write_text(model_source(original, sizes.randint(200, 1800), 1 + sizes.random()))
        own, tools, wall = time.process_time(), children_cpu(), time.perf_counter()
        compiled = build_project(project, options)
        built, built_tools = time.process_time(), children_cpu()
        bench_compiled(compiled, TARGETS["host"], repetitions=20, estimate=False)
        rows.append({"build": round(built - own, 3), "build_tools": round(built_tools - tools, 3),
                     "bench": round(time.process_time() - built, 3), "bench_tools": round(children_cpu() - built_tools, 3),
                     "total_cpu": round(time.process_time() - own + children_cpu() - tools, 3),
                     "wall": round(time.perf_counter() - wall, 3)})
        print(json.dumps(rows[-1]), flush=True)
    warm = rows[1:]
    print(json.dumps({name: round(statistics.median(r[name] for r in warm), 3) for name in warm[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
