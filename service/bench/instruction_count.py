"""The work one call of a compiled model does on the board's own core, counted under qemu-user.

Timings under emulation say nothing about a board; the instructions the board's core executes
do, and qemu can count them exactly. Our TCG plugin (qemu_plugin/insn_count.c, built here with
the host's C compiler) counts the instructions of the tool's main thread, the bytes it loads and
stores, and the misses of a simulated last-level cache the size of the board's (the traffic to
DRAM). A preloaded clock (qemu_plugin/fixed_clock.c, built for the board with zig cc) makes the
tool's own printing the same on every run, and marks each clock read for the plugin.

IREE reads the clock a fixed number of times per call (p). A run of iree-benchmark-module with 3
calls has 2p more marks than a run with 1 call, which gives p; in the 3-call run, the counts
between mark j and mark j + p are one call's whenever both marks fall in the second and third
(steady-state) calls. The last run of p equal such windows is the third call's work; a stateful model's calls differ
a little (each sees other state, and math functions branch on the data), and there the windows
within 1 % of each other make the run. The totals
of a whole run are not used: how often start-up and teardown wait for the tool's helper threads
depends on the host's timing, the calls do not. Instructions, bytes and DRAM bytes are the same
for the same artifact on every run.

The plugin also splits a call's instructions into the kernels' (the compiled dispatch functions
and what they call, e.g. memcpy) and the runtime's own (the VM, the HAL, the command buffer, the
tool): kernel code is the library the loader maps after start-up, or, for a program with the
kernels linked in (EmitC), the address range of its dispatch symbols. Each kernel function's
instructions, calls (workgroups) and runs (dispatches) are kept apart, and named here from the
library's symbols (kernel_symbols.py).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import BenchError
from ..pipeline import cache
from ..pipeline.targets import Target
from ..pipeline.tools import run_tool, system_tool
from ..runtimes.toolchain import toolchain_for
from .kernel_symbols import vmfb_dispatch_names, vmfb_kernel_names
from .run import input_files
from .runtime_tools import emulator, module_mode, tool_command

SOURCES = Path(__file__).parent / "qemu_plugin"
PLUGIN_SOURCE, CLOCK_SOURCE = SOURCES / "insn_count.c", SOURCES / "fixed_clock.c"
MARKER = 48666        # the system call fixed_clock.c makes on each clock read (no Linux has it)
TOOL, MODULE, CLOCK_LIBRARY = "iree-benchmark-module", "model.vmfb", "fixed_clock.so"
GUEST_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}   # qemu-user passes its environment on
FIELDS = ("instructions", "loaded_bytes", "stored_bytes", "cache_misses", "cache_writebacks", "kernel_instructions",
          "kernel_calls", "kernel_runs")
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
    calls: int              # calls of the counted run; the figures are its last call's
    kernel_instructions: int = 0   # in the dispatch functions and their callees; the rest is the runtime's
    dispatches: int = 0            # runs of calls to one kernel function (a dispatch's workgroups)
    workgroups: int = 0            # calls of kernel functions
    kernels: tuple = ()            # per kernel function: {"entry", "name", "instructions", "calls", "runs"}

    @property
    def bytes(self) -> int:
        return self.loaded_bytes + self.stored_bytes

    @property
    def runtime_instructions(self) -> int:
        return self.instructions - self.kernel_instructions

    def to_json(self) -> dict:
        return {"instructions": self.instructions, "bytes": self.bytes, "loaded_bytes": self.loaded_bytes,
                "stored_bytes": self.stored_bytes, "dram_bytes": self.dram_bytes, "calls": self.calls,
                "kernel_instructions": self.kernel_instructions, "runtime_instructions": self.runtime_instructions,
                "dispatches": self.dispatches, "workgroups": self.workgroups,
                "per_dispatch": [dict(k) for k in self.kernels]}


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


def counting_options(target: Target, board_cache: Cache, out: Path, *, iree_tool: bool = True,
                     static_kernels: tuple[int, int] | None = None) -> list[str]:
    """The qemu options that load the plugin (counts written to `out`) and, for an IREE tool,
    preload the clock whose reads mark the calls (count_run puts it in the working folder).
    static_kernels: the link-time address range of kernels linked into the program (EmitC)."""
    plugin = f"{plugin_library()},out={out},cache_kb={board_cache.kb},ways={board_cache.ways},line={board_cache.line}"
    if not iree_tool:
        return ["-plugin", plugin]
    if static_kernels:
        plugin += f",static={static_kernels[0]:x}-{static_kernels[1]:x}"
    return ["-plugin", f"{plugin},marker={MARKER}", "-E", f"LD_PRELOAD=./{CLOCK_LIBRARY}"]


def parse_counts(text: str) -> dict:
    """The plugin's totals ({name: int}); under "marks", the counts (FIELDS) at each mark; under
    "functions", per mark, {entry address: (instructions, calls, runs)} of each kernel function."""
    values: dict = {"marks": [], "functions": {}}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "mark":
            values["marks"].append(tuple(int(v) for v in value.split()[1:]))
        elif name == "function":
            mark, entry, *numbers = value.split()
            values["functions"].setdefault(int(mark), {})[int(entry, 16)] = tuple(map(int, numbers))
        else:
            values[name] = int(value)
    return values


def count_run(work: Path, program: Path, arguments: list[str], target: Target, board_cache: Cache, out: Path,
              static_kernels: tuple[int, int] | None = None) -> dict:
    """The plugin's counts for one emulated run of `program` with `arguments`, in `work`.

    The guest sees the same command line and environment on every run: the program and the
    clock are linked into the working folder and named relative to it, and the environment is
    fixed. Their lengths move the guest's stack, and with it the alignment (and so the cost) of
    every copy the runtime makes."""
    if target.arch == "x86_64":
        raise BenchError(f"instructions are counted under qemu, and {target.name} runs natively")
    for name, source in ((program.name, program), (CLOCK_LIBRARY, fixed_clock_library(target))):
        if not (work / name).exists():
            (work / name).symlink_to(source)
    argv = [*emulator(target, counting_options(target, board_cache, out, static_kernels=static_kernels)),
            f"./{program.name}", *arguments]
    result = run_tool(argv, timeout=COUNT_TIMEOUT, stage="benchmarking", cwd=work, env=GUEST_ENVIRONMENT)
    if result.returncode != 0 or not out.exists():
        lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
        raise BenchError(f"counting instructions failed: {lines[-1][:300] if lines else result.returncode}",
                         detail=result.stderr[-4000:])
    return parse_counts(out.read_text())


def count_program(work: Path, program: Path, arguments_for, target: Target, board_cache: Cache,
                  steady=None, static_kernels: tuple[int, int] | None = None, symbols: dict | None = None) -> Counts:
    """One steady-state call's work of a program that calls a model N times when run with
    arguments_for(N) (the same length for 1 and 3): a 1-call and a 3-call run, see the module's
    docstring. Any program whose calls read the clock the same number of times can be counted;
    `steady` picks the call (two mark indices) from the two runs' marks (steady_call unless said).
    symbols ({address: name} of the kernel library or program) name the kernel functions."""
    one = count_run(work, program, arguments_for(1), target, board_cache, work / "counts-1.txt", static_kernels)
    three = count_run(work, program, arguments_for(3), target, board_cache, work / "counts-3.txt", static_kernels)
    if len(one["marks"]) == len(three["marks"]) and one["marks"]:
        return batch_call_counts(one, three, board_cache, symbols or {})
    start, end = (steady or steady_call)(one["marks"], three["marks"])
    return call_counts(three, start, end, board_cache, symbols or {})


def batch_call_counts(one: dict, three: dict, board_cache: Cache, symbols: dict) -> Counts:
    """For a tool that reads the clock only around its whole batch of calls (iree-benchmark-module
    with an inline-HAL module: no device, so no clock read inside a call): the two runs read it
    the same number of times, and the window between two reads that grew holds the calls; half
    of what it grew by is one call (the second and third, both steady)."""
    def window(run: dict, j: int) -> dict:
        return {**run, "marks": [run["marks"][j], run["marks"][j + 1]],
                "functions": {0: run["functions"].get(j, {}), 1: run["functions"].get(j + 1, {})}}
    grew = max(range(len(three["marks"]) - 1),
               key=lambda j: (three["marks"][j + 1][0] - three["marks"][j][0]) - (one["marks"][j + 1][0] - one["marks"][j][0]))
    a = call_counts(window(one, grew), 0, 1, board_cache, symbols)
    b = call_counts(window(three, grew), 0, 1, board_cache, symbols)
    kernels = {k["entry"]: dict(k) for k in b.kernels}
    for k in a.kernels:
        if k["entry"] in kernels:
            for field in ("instructions", "calls", "runs"):
                kernels[k["entry"]][field] -= k[field]
    for k in kernels.values():
        for field in ("instructions", "calls", "runs"):
            k[field] //= 2
    half = lambda name: (getattr(b, name) - getattr(a, name)) // 2
    return Counts(instructions=half("instructions"), loaded_bytes=half("loaded_bytes"),
                  stored_bytes=half("stored_bytes"), dram_bytes=half("dram_bytes"), calls=3,
                  kernel_instructions=half("kernel_instructions"), dispatches=half("dispatches"),
                  workgroups=half("workgroups"),
                  kernels=tuple(k for k in sorted(kernels.values(), key=lambda k: k["entry"]) if k["instructions"]))


def cached_counts(key_parts: list, count) -> Counts:
    """count() once per key: the same artifact, inputs, core, cache model, plugin, clock and
    program give the same counts, so a rebuild that changed nothing costs no emulation."""
    key = cache.digest(*key_parts, PLUGIN_SOURCE.read_bytes(), CLOCK_SOURCE.read_bytes())
    stored = cache.cache_root() / "counts" / f"{key}.json"
    if stored.exists():
        values = json.loads(stored.read_text())
        return Counts(**{**values, "kernels": tuple(values.get("kernels", ()))})
    counts = count()
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(asdict(counts)))
    return counts


def count_per_call(artifact_dir: Path, target: Target, board_cache: Cache) -> Counts:
    """One steady-state call's work of artifact_dir's model.vmfb, run by iree-benchmark-module. Cached."""
    tool = tool_command(target, TOOL)[0][-1]
    return cached_counts([(artifact_dir / MODULE).read_bytes(), (artifact_dir / "inputs.npz").read_bytes(),
                          target.name, target.core, repr(board_cache), tool],
                         lambda: count_uncached(artifact_dir, target, board_cache))


def count_uncached(artifact_dir: Path, target: Target, board_cache: Cache) -> Counts:
    """count_per_call, emulating now."""
    with tempfile.TemporaryDirectory(prefix="bela-iree-count-") as tmp:
        work = Path(tmp)
        inputs = [p.name for p in input_files(artifact_dir, work)]
        (work / MODULE).symlink_to(artifact_dir / MODULE)

        def arguments(calls: int) -> list[str]:
            return [*module_mode(target), f"--module={MODULE}", "--device=local-sync", "--function=main", *[f"--input=@{p}" for p in inputs],
                    f"--benchmark_min_time={calls}x", "--benchmark_repetitions=1", "--benchmark_min_warmup_time=0"]
        return count_program(work, Path(tool_command(target, TOOL)[0][-1]), arguments, target, board_cache,
                             symbols={**vmfb_kernel_names(artifact_dir / MODULE),
                                      "ordered": vmfb_dispatch_names(artifact_dir / MODULE)})


def marks_per_call(one: list[tuple], three: list[tuple]) -> int:
    period, odd = divmod(len(three) - len(one), 2)
    if odd or period <= 0:
        raise BenchError(f"counting instructions failed: the tool read the clock {len(one)} times for one call "
                         f"and {len(three)} for three", hint="the IREE tools changed how they time a call")
    return period


def second_call(one: list[tuple], three: list[tuple]) -> tuple[int, int]:
    """For a program that reads the clock only as each call starts and ends (runtime/'s test
    program, around bela_iree_model_run): the second call's start to the third's. Its calls are
    steady within a few hundred instructions, not exactly (the C library's copies and the
    program's own bookkeeping between calls vary with the addresses), so no run of equal calls
    is looked for; the same artifact still gives the same count."""
    period = marks_per_call(one, three)
    return period, 2 * period


def call_counts(run: dict, start: int, end: int, board_cache: Cache, symbols: dict) -> Counts:
    """The counts between marks start and end of a run (parse_counts), kernel functions named."""
    marks = run["marks"]
    per = dict(zip(FIELDS, (b - a for a, b in zip(marks[start], marks[end]))))
    before, after = run["functions"].get(start, {}), run["functions"].get(end, {})
    kernels = []
    for entry, numbers in after.items():
        delta = [b - a for a, b in zip(before.get(entry, (0, 0, 0)), numbers)]
        if any(delta):
            kernels.append({"entry": entry, "instructions": delta[0], "calls": delta[1], "runs": delta[2]})
    names = name_entries([k["entry"] for k in kernels], symbols)
    ordered = symbols.get("ordered", [])
    if not names and len(ordered) == len(kernels):   # a library without symbols lays them out in ordinal order
        names = dict(zip(sorted(k["entry"] for k in kernels), ordered))
    for kernel in kernels:
        kernel["name"] = names.get(kernel["entry"])   # None: unnamed (bench matches it to the dispatch table)
    return Counts(instructions=per["instructions"], loaded_bytes=per["loaded_bytes"], stored_bytes=per["stored_bytes"],
                  dram_bytes=(per["cache_misses"] + per["cache_writebacks"]) * board_cache.line, calls=3,
                  kernel_instructions=per.get("kernel_instructions", 0), dispatches=per.get("kernel_runs", 0),
                  workgroups=per.get("kernel_calls", 0),
                  kernels=tuple(sorted(kernels, key=lambda k: k["entry"])))


def name_entries(entries: list[int], symbols: dict) -> dict:
    """{entry address: symbol name}: the run-time addresses are the dispatch symbols' moved by one
    load offset (the library's base), the offset that puts every entry on one. {} when no offset
    does (a library without its dispatch symbols: bench names those by the dispatch table)."""
    by_address = {address & ~1: name for address, name in symbols.items() if isinstance(address, int) and "dispatch" in name
                  and not name.startswith("iree_")}
    if not entries or not by_address:
        return {}
    for address in by_address:
        offset = entries[0] - address
        if all((e - offset) in by_address for e in entries):
            return {e: by_address[e - offset] for e in entries}
    return {}


def steady_call(one: list[tuple], three: list[tuple]) -> tuple[int, int]:
    """One call's marks (start, end) from the marks of a 1-call and a 3-call run of an IREE tool."""
    period = marks_per_call(one, three)
    windows = [tuple(b - a for a, b in zip(three[j], three[j + period])) for j in range(len(three) - period)]
    # runs of equal windows: p of them in a row are p windows each spanning one whole call from
    # the same points; the last such run is the third call (the first is cold, and calls can
    # differ by a few hundred instructions as the runtime's pools settle)
    runs, start = [], 0
    for j in range(1, len(windows) + 1):
        if j == len(windows) or windows[j] != windows[start]:
            runs.append((start, j - start))
            start = j
    whole = [first for first, length in runs if length >= period]
    if not whole:   # calls that differ a little: a stateful model (its math branches on the data)
        whole = [first for first, length in _close_runs(windows) if length >= period]
    if not whole:
        raise BenchError("counting instructions failed: no call was marked the same way twice",
                         hint="a model whose calls differ by more than 1 % (data-dependent loops) "
                              "cannot be counted this way")
    return whole[-1], whole[-1] + period


CLOSE = 0.01    # calls of a stateful model differ by well under 1 % of their instructions


def _close_runs(windows: list[tuple]) -> list[tuple[int, int]]:
    """Runs of windows whose instructions are within CLOSE of the run's first: each window of
    such a run still spans one whole call, from the same point in the tool's loop. Each call of
    a stateful model sees other state, so its instructions differ a little from the last's. The
    first window of the last such run is taken, as for equal calls: a call after the first."""
    runs, start = [], 0
    for j in range(1, len(windows) + 1):
        first = windows[start][0]
        if j == len(windows) or abs(windows[j][0] - first) > CLOSE * max(first, 1):
            runs.append((start, j - start))
            start = j
    return runs
