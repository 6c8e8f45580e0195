"""Instructions per multiply-add of every zoo model on the boards' emulated cores, and the
board estimates beside the Bela-IREE paper's measured figures.

    nice -n 10 .venv/bin/python benchmarks/instructions_per_mac.py [NAME...] [--targets bela,gem,bbai64]

For each model and ARM target: the vmfb with IREE's default flags (`--no-tune`), one steady-state
call counted on the board's core under qemu (service/bench/instruction_count.py: instructions,
bytes from the simulated L2), divided by the multiply-adds of the PyTorch model as written
(macs.py; rewrites such as Winograd convolutions can do fewer). For Bela, also "before": the
kernels built as before issue 18 (libm's software fmaf, service/pipeline/arm_fma.py; one input
per reduction step in the GEMV spec, service/pipeline/tuning_spec.py). Writes benchmarks/instructions_per_mac.md and board_estimates.md, and
instructions_per_mac.json (kept between runs: models already counted on every target are not
counted again unless named; a named model's "before" is kept if it was counted).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import contextmanager
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

import zoo  # noqa: E402
from service.bench.counted_tuning import counted_table  # noqa: E402
from service.bench.estimate import BOARD_MODELS, estimate_from_counts  # noqa: E402
from service.bench.instruction_count import count_per_call  # noqa: E402
from service.errors import BelaIreeError  # noqa: E402
from service.pipeline import arm_math, tuning_spec  # noqa: E402
from service.pipeline.compile import CompileOptions, compile_model  # noqa: E402
from service.pipeline.targets import TARGETS, Target  # noqa: E402
from service.pipeline.tools import system_tool  # noqa: E402

from macs import count_macs  # noqa: E402

RESULTS = HERE / "instructions_per_mac.json"
GOAL = 0.75   # instructions per multiply-add on the Cortex-A8 for matmul/convolution models
# ZOO.md, "The paper's results": one 1024-sample block (ms), Bela (BBB) and BBAI64 llvm-cpu
PAPER = {"bela": {"basic_mlp": "222 (VMVX)", "resnet_1d": "segfault", "simple_conv_1d": "2549", "simple_rnn": "could not export",
                  "single_mm": "19.7", "siren_mlp": "778", "transformer_block": "segfault",
                  "variational_encoder": "could not export", "mdrnn": "37.6 (VMVX)"},
         "bbai64": {"basic_mlp": "24.0", "simple_conv_1d": "137", "single_mm": "7.72", "siren_mlp": "50.4",
                    "transformer_block": "142", "mdrnn": "0.176"}}


@contextmanager
def as_before():
    """Bela kernels built as before this work: the plain ARM linker (libm's fmaf), the GEMV
    tuning spec stepping its reduction one input at a time, IREE's own matmul tiles and no
    math rewrite (arm_math.py)."""
    original_link, original_step = Target.vmfb_link_flags, dict(tuning_spec.REDUCTION_STEP)
    original_tile, original_flags = dict(tuning_spec.MATMUL_TILE), arm_math.flags

    def plain(self):
        if self.arch != "armv7":
            return []
        return ["--iree-llvmcpu-link-embedded=false",
                f"--iree-llvmcpu-system-linker-path={system_tool('arm-linux-gnueabihf-ld', 'binutils-arm-linux-gnueabihf')}"]
    Target.vmfb_link_flags = plain
    tuning_spec.REDUCTION_STEP.clear()
    tuning_spec.MATMUL_TILE.clear()
    arm_math.flags = lambda target: []
    try:
        yield
    finally:
        Target.vmfb_link_flags = original_link
        tuning_spec.REDUCTION_STEP.update(original_step)
        tuning_spec.MATMUL_TILE.update(original_tile)
        arm_math.flags = original_flags


def count(name: str, target: str, work: Path) -> dict:
    compile_model(zoo.model_path(name), CompileOptions(TARGETS[target], variant="default"), work)
    counts = count_per_call(work, TARGETS[target], BOARD_MODELS[target].cache)
    return {**counts.to_json(), "estimate_ms": estimate_from_counts(counts, BOARD_MODELS[target])["ms"],
            "library_calls": sorted({c for d in compiled_kernels(work) for c in d["library_calls"]})}


def compiled_kernels(folder: Path) -> list[dict]:
    path = folder / "kernels.json"
    return json.loads(path.read_text()) if path.exists() else []


def measure(name: str, targets: list[str], work: Path, known: dict) -> dict:
    """Counts of `name` on each target ("before" for Bela only if `known` lacks it)."""
    row = {"macs": count_macs(zoo.model_path(name))}
    for target in targets:
        entry = {k: v for k, v in known.get(target, {}).items() if k == "before"}
        try:
            entry["after"] = count(name, target, work / f"{name}-{target}")
            if target == "bela" and "before" not in entry:
                with as_before():
                    entry["before"] = count(name, target, work / f"{name}-{target}-before")
        except BelaIreeError as e:
            entry["error"] = e.message
        row[target] = entry
        print(name, target, {k: v.get("instructions") if isinstance(v, dict) else v for k, v in entry.items()},
              flush=True)
    return row


def chosen(name: str, target: str) -> dict:
    """The flag set bela-iree builds by default without a board: chosen by counted work
    (service/bench/counted_tuning.py), with its counts."""
    with tempfile.TemporaryDirectory(prefix="bela-iree-ipm-chosen-") as tmp:
        table = counted_table(zoo.model_path(name), CompileOptions(TARGETS[target]), Path(tmp))
    return {"variant": table["chosen"], **table["variants"].get(table["chosen"], {})}


def per_mac(figures: dict | None, macs: int) -> str:
    if not figures or not macs:
        return ""
    return f"{figures['instructions'] / macs:.2f}"


def chosen_cell(figures: dict | None, macs: int) -> str:
    if not figures or "instructions" not in figures:
        return ""
    return f"{figures['variant']}: {per_mac(figures, macs) or mega(figures['instructions']) + ' M'}"


def mega(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:.3g}"


def tables(results: dict, targets: list[str]) -> str:
    lines = [f"# Instructions per multiply-add on the boards' cores ({date.today()})", "",
             "Generated by `benchmarks/instructions_per_mac.py`. One steady-state call of each zoo model's vmfb "
             "(IREE's default flags), counted on the board's core emulated by qemu-user with bela-iree's "
             "instruction-counting plugin: exact, the same on every run. The last column: the flag set `bench`/`compile` choose without a board (fewest instructions "
             "counted, `service/bench/counted_tuning.py`). MACs are the multiply-adds of the "
             "PyTorch model as written (`benchmarks/macs.py`); a rewrite can do fewer (resnet_1d's Winograd "
             "convolutions: half), so fewer than one instruction per MAC is possible without NEON's four lanes. "
             "DRAM MB: bytes a call moves between the simulated L2 and DRAM. Estimated ms: the board model of "
             "README.md (\"Estimated latency on a board\"), an estimate, not a measurement.", ""]
    for target in targets:
        model = BOARD_MODELS[target]
        lines += [f"## {target}: {model.core} ({model.board})", ""]
        if target == "bela":
            lines += ["Before: kernels calling libm's `fmaf` and `floorf` per vector lane (IREE's approximations of "
                      "tanh, exp, sin, log... use fused multiply-adds and floor, which the Cortex-A8 lacks), `fmaxf` "
                      "in softmax, single-row products stepping their reduction one input at a time, and many-row "
                      "products shuffling a Linear's [out, in] weights on every step. After: the approximations "
                      "rewritten before vectorizing into NEON multiply, add and conversions (`service/pipeline/arm_math.py`), "
                      "Linear weights kept [in, out] with a 4 x 8 register tile, 16 inputs per step for single rows "
                      "(`service/pipeline/tuning_spec.py`), and what IREE expands later linked with bela-iree's NEON "
                      "`fmaf`, `floorf`, `fmaxf` (`service/pipeline/arm_fmaf.S`, `arm_floor_max.S`). "
                      f"Goal for matmul/convolution models: at most {GOAL} instructions per MAC.", "",
                      "| model | MACs (M) | before: M instructions | before: per MAC | after: M instructions | "
                      "after: per MAC | DRAM MB | estimated ms | C library calls after | flags chosen by counting: "
                      "per MAC |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        else:
            lines += ["| model | MACs (M) | M instructions | per MAC | DRAM MB | estimated ms |",
                      "| --- | --- | --- | --- | --- | --- |"]
        for name, row in sorted(results.items()):
            entry = row.get(target, {})
            macs = row["macs"]
            if "error" in entry:
                lines.append(f"| {name} | {mega(macs)} | failed: {entry['error'][:80]} |")
                continue
            after = entry.get("after")
            if not after:
                continue
            if target == "bela":
                before = entry.get("before")
                lines.append(f"| {name} | {mega(macs)} | {mega(before and before['instructions'])} | "
                             f"{per_mac(before, macs)} | {mega(after['instructions'])} | {per_mac(after, macs)} | "
                             f"{after['dram_bytes'] / 1e6:.3g} | {after['estimate_ms']:.3g} | "
                             f"{', '.join(after['library_calls']) or 'none'} | {chosen_cell(entry.get('chosen'), macs)} |")
            else:
                lines.append(f"| {name} | {mega(macs)} | {mega(after['instructions'])} | {per_mac(after, macs)} | "
                             f"{after['dram_bytes'] / 1e6:.3g} | {after['estimate_ms']:.3g} |")
        lines.append("")
    return "\n".join(lines)


def estimates_table(results: dict) -> str:
    lines = [f"# Board estimates beside the paper's measured figures ({date.today()})", "",
             "Generated by `benchmarks/instructions_per_mac.py`. Ours: estimated ms per call of today's bela-iree "
             "vmfb (IREE 3.13, default flags), from instructions and DRAM bytes counted on the emulated core and the "
             "board model in README.md - an estimate, not a measurement. The paper's: measured on the board for one "
             "1024-sample block with the IREE of 2023 (ZOO.md); their code is not ours, so the two columns "
             "compare what the models cost then and what we estimate now, not the estimator's error. "
             "`bench --board` records measured beside estimated when a board is attached.", ""]
    for target, title in (("bela", "Bela (BeagleBone Black, Cortex-A8)"), ("bbai64", "BeagleBone AI-64 (Cortex-A72)")):
        lines += [f"## {title}", "", "| model | ours: estimated ms | paper: measured ms |", "| --- | --- | --- |"]
        for name, row in sorted(results.items()):
            after = row.get(target, {}).get("after")
            ours = f"{after['estimate_ms']:.3g}" if after else "not counted"
            lines.append(f"| {name} | {ours} | {PAPER[target].get(name, 'n/a')} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--targets", default="bela,gem,bbai64")
    parser.add_argument("--chosen", action="store_true",
                        help="also count every flag set on Bela and record the one chosen by counting")
    args = parser.parse_args()
    targets = args.targets.split(",")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    names = args.names or [n for n in zoo.names() if not all(t in results.get(n, {}) for t in targets)]
    names = [] if args.chosen else names
    with tempfile.TemporaryDirectory(prefix="bela-iree-ipm-") as tmp:
        for name in names:
            results[name] = {**results.get(name, {}), **measure(name, targets, Path(tmp), results.get(name, {}))}
            RESULTS.write_text(json.dumps(results, indent=1))
    if args.chosen:
        for name in args.names or zoo.names():
            if name in results and "bela" in results[name]:
                results[name]["bela"]["chosen"] = chosen(name, "bela")
                print(name, "chosen", results[name]["bela"]["chosen"], flush=True)
                RESULTS.write_text(json.dumps(results, indent=1))
    every = sorted({t for row in results.values() for t in row if t in TARGETS})
    (HERE / "instructions_per_mac.md").write_text(tables(results, [t for t in ("bela", "gem", "bbai64") if t in every]))
    (HERE / "board_estimates.md").write_text(estimates_table(results))
    print((HERE / "instructions_per_mac.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
