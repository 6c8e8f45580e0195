"""The work one call of a compiled model does on the board's own core, counted under qemu-user.

Timings under emulation say nothing about a board; the instructions the board's core executes
do, and qemu can count them exactly. Our TCG plugin (qemu_plugin/insn_count.c, built here with
the host's C compiler) counts the instructions of the tool's main thread, the bytes it loads and
stores, and the misses of a simulated last-level cache the size of the board's (the traffic to
DRAM). A preloaded clock (qemu_plugin/fixed_clock.c, built for the board with zig cc) makes the
tool's own printing the same on every run. One call's work is the difference between a run of
iree-benchmark-module with 1 + K calls and one with 1 call: start-up, loading and the first,
cold call cancel out, what is left is K calls in steady state.

Instructions and bytes are exactly the same for the same artifact on every run; the simulated
cache can differ by a line or two (an address the host chose), so DRAM bytes are rounded.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import BenchError
from ..pipeline import cache
from ..pipeline.targets import Target
from ..pipeline.tools import run_tool, system_tool
from ..runtimes.toolchain import toolchain_for
from .run import input_files
from .runtime_tools import tool_command

SOURCES = Path(__file__).parent / "qemu_plugin"
PLUGIN_SOURCE, CLOCK_SOURCE = SOURCES / "insn_count.c", SOURCES / "fixed_clock.c"
# the guest's `write` system call: the plugin reports the counts at the tool's last write to stdout
WRITE_SYSCALL = {"armv7": 4, "aarch64": 64}
COUNT_TIMEOUT = 1800.0
BUILD_TIMEOUT = 300.0


@dataclass(frozen=True)
class Cache:
    """The board's last-level cache, as the plugin simulates it (LRU, write-back, write-allocate)."""
    kb: int
    ways: int
    line: int = 64


@dataclass(frozen=True)
class Counts:
    """Per call of the model, on the board's core, in steady state."""
    instructions: int
    loaded_bytes: int
    stored_bytes: int
    dram_bytes: int         # simulated cache misses and write-backs, times the line size
    calls: int              # K: calls the figures are averaged over

    @property
    def bytes(self) -> int:
        return self.loaded_bytes + self.stored_bytes

    def to_json(self) -> dict:
        return {"instructions": self.instructions, "bytes": self.bytes, "loaded_bytes": self.loaded_bytes,
                "stored_bytes": self.stored_bytes, "dram_bytes": self.dram_bytes, "calls": self.calls}


def _built(source: Path, name: str, key_parts: list[str], argv_for) -> Path:
    """source compiled to a shared library `name` (argv_for(output) runs the compiler), cached."""
    store = cache.Cache("qemu-plugins")
    key = cache.digest(source.read_bytes(), *key_parts)
    entry = store.get(key)
    if entry is None:
        with tempfile.TemporaryDirectory(prefix="bela-iree-plugin-") as tmp:
            out = Path(tmp) / "out"
            out.mkdir()
            result = run_tool(argv_for(out / name, Path(tmp)), timeout=BUILD_TIMEOUT, stage="benchmarking")
            if result.returncode != 0 or not (out / name).exists():
                raise BenchError(f"could not build {source.name}", detail=result.stderr[-4000:],
                                 hint="check that a C compiler is installed (make test installs one)")
            entry = store.put(key, out)
    return entry / name


def plugin_library() -> Path:
    """The instruction-counting plugin, built for this computer (qemu loads it)."""
    cc = system_tool("cc", "gcc")
    return _built(PLUGIN_SOURCE, "libinsn.so", ["host", cc],
                  lambda out, _: [cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(out), str(PLUGIN_SOURCE)])


def fixed_clock_library(target: Target) -> Path:
    """The deterministic clock, built for the board (the emulated tool preloads it)."""
    toolchain = toolchain_for(target)

    def argv(out: Path, work: Path) -> list[str]:
        cc = toolchain.compilers(work / "toolchain")["CC"]
        return [cc, "-O2", "-shared", "-fPIC", "-w", "-o", str(out), str(CLOCK_SOURCE)]
    return _built(CLOCK_SOURCE, "fixed_clock.so", [target.arch, toolchain.describe()], argv)


def counting_options(target: Target, board_cache: Cache, out: Path, *, iree_tool: bool = True) -> list[str]:
    """The qemu options that load the plugin (counts written to `out`) and, for an IREE tool,
    preload the clock and report the counts at its last write to stdout."""
    plugin = f"{plugin_library()},out={out},cache_kb={board_cache.kb},ways={board_cache.ways},line={board_cache.line}"
    if not iree_tool:
        return ["-plugin", plugin]
    return ["-plugin", f"{plugin},stdout_write={WRITE_SYSCALL[target.arch]}",
            "-E", f"LD_PRELOAD={fixed_clock_library(target)}"]


def parse_counts(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "error":
            raise BenchError(f"the counting plugin failed: {value}")
        values[name] = int(value)
    return values


def count_run(module: Path, inputs: list[str], target: Target, board_cache: Cache, calls: int,
              work: Path) -> dict[str, int]:
    """The plugin's totals for one emulated run of iree-benchmark-module making `calls` calls."""
    out = work / f"counts-{calls}.txt"
    prefix, ran_on = tool_command(target, "iree-benchmark-module", counting_options(target, board_cache, out))
    if ran_on != "emulator":
        raise BenchError(f"instructions are counted under qemu, and {target.name} runs natively")
    argv = [*prefix, f"--module={module}", "--device=local-sync", "--function=main",
            *[f"--input=@{p}" for p in inputs], f"--benchmark_min_time={calls}x", "--benchmark_repetitions=1",
            "--benchmark_min_warmup_time=0"]
    result = run_tool(argv, timeout=COUNT_TIMEOUT, stage="benchmarking")
    if result.returncode != 0 or not out.exists():
        lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
        raise BenchError(f"counting instructions failed: {lines[-1][:300] if lines else result.returncode}",
                         detail=result.stderr[-4000:])
    return parse_counts(out.read_text())


def count_per_call(artifact_dir: Path, target: Target, board_cache: Cache, calls: int = 1) -> Counts:
    """One call's work (averaged over `calls` steady-state calls) of artifact_dir's model.vmfb."""
    with tempfile.TemporaryDirectory(prefix="bela-iree-count-") as tmp:
        work = Path(tmp)
        inputs = [str(p) for p in input_files(artifact_dir, work)]
        module = artifact_dir / "model.vmfb"
        base = count_run(module, inputs, target, board_cache, 1, work)
        more = count_run(module, inputs, target, board_cache, 1 + calls, work)
    per = {name: (more[name] - base[name]) / calls for name in base}
    line = base.get("cache_line_bytes", board_cache.line)
    dram = (per.get("cache_misses", 0) + per.get("cache_writebacks", 0)) * line
    return Counts(instructions=round(per["instructions"]), loaded_bytes=round(per["loaded_bytes"]),
                  stored_bytes=round(per["stored_bytes"]), dram_bytes=_round_to(dram, 1024), calls=calls)


def _round_to(value: float, quantum: int) -> int:
    return int(round(value / quantum)) * quantum
