"""Counted work on the boards' emulated cores: our qemu plugin against programs whose work is
known exactly, and one call of a compiled model (real qemu, real IREE runtime)."""
from __future__ import annotations

import re

import pytest

from service.bench.instruction_count import Cache, count_per_call, count_uncached, counting_options, parse_counts
from service.bench.runtime_tools import emulator
from service.errors import BenchError
from service.pipeline.targets import get_target
from service.pipeline.tools import run_tool
from service.runtimes.toolchain import toolchain_for

from .conftest import ROOT, cli_json

BELA_CACHE = Cache(kb=256, ways=8)


@pytest.fixture(scope="module")
def stream_words(tmp_path_factory):
    """run(target, words, passes) -> the plugin's totals for tests/guest/stream_words.c."""
    work = tmp_path_factory.mktemp("guest")
    programs = {}

    def run(target_name: str, words: int, passes: int) -> dict:
        target = get_target(target_name)
        if target_name not in programs:
            cc = toolchain_for(target).compilers(work / f"toolchain-{target_name}")["CC"]
            programs[target_name] = work / f"stream_words-{target_name}"
            built = run_tool([cc, "-O1", "-o", str(programs[target_name]), str(ROOT / "tests/guest/stream_words.c")],
                             timeout=300)
            assert built.returncode == 0, built.stderr
        out = work / "counts.txt"
        argv = [*emulator(target, counting_options(target, BELA_CACHE, out, iree_tool=False)),
                str(programs[target_name]), str(words), str(passes)]
        result = run_tool(argv, timeout=60)
        assert result.returncode == 0, result.stderr
        return parse_counts(out.read_text())
    return run


@pytest.mark.parametrize("target", ["bela", "gem"])
def test_one_more_pass_costs_exactly_its_instructions_and_bytes(stream_words, target):
    words = 1000
    two, three = stream_words(target, words, 2), stream_words(target, words, 3)
    assert three["instructions"] - two["instructions"] == 3 * words + 4
    assert three["loaded_bytes"] - two["loaded_bytes"] == 4 * words
    assert three["stored_bytes"] == two["stored_bytes"]


def test_the_simulated_cache_misses_only_what_does_not_fit(stream_words):
    """256 KB LRU: a 1 MB stream misses every line on every pass; 64 KB stays after the first."""
    line_words = BELA_CACHE.line // 4
    big = (1 << 20) // 4
    assert stream_words("bela", big, 2)["cache_misses"] - stream_words("bela", big, 1)["cache_misses"] == big // line_words
    small = (64 << 10) // 4
    assert stream_words("bela", small, 2)["cache_misses"] == stream_words("bela", small, 1)["cache_misses"]


def test_a_call_of_a_model_is_counted_the_same_every_time(compiled):
    """single_mm on emulated Cortex-A8: 1024x1024 multiply-adds, its 4 MB of weights read once."""
    folder = compiled("single_mm", "bela").folder
    target = get_target("bela")
    first, again = count_uncached(folder, target, BELA_CACHE), count_uncached(folder, target, BELA_CACHE)
    assert count_per_call(folder, target, BELA_CACHE) == first        # and the cached figure is that one
    assert (first.instructions, first.loaded_bytes, first.stored_bytes) == (again.instructions, again.loaded_bytes,
                                                                          again.stored_bytes)
    macs = 1024 * 1024
    assert 0.1 * macs < first.instructions < 10 * macs
    weights = 4 * macs
    assert weights <= first.loaded_bytes < 2 * weights
    assert weights <= first.dram_bytes < 1.5 * weights        # weights do not fit in 256 KB: streamed every call
    assert first.dram_bytes == again.dram_bytes


def test_bench_on_an_arm_target_without_a_board_reports_a_labelled_estimate(tmp_path):
    data, result = cli_json("bench", "single_mm", "--target", "bela", "--no-tune", "--seconds", "0.3",
                            "--out", str(tmp_path))
    estimate = data["estimate"]
    assert data["ran_on"] == "emulator" and "not a measurement" in estimate["note"]
    model = estimate["model"]
    assert (model["core"], model["clock_ghz"], model["dram_peak_gb_s"], model["cache"]["kb"]) == ("Cortex-A8", 1.0, 1.6, 256)
    # in-order core: compute and memory time add up
    compute = estimate["instructions"] / (model["ipc"] * model["clock_ghz"] * 1e6)
    memory = estimate["dram_bytes"] / (model["dram_gb_s"] * 1e6)
    assert estimate["ms"] == pytest.approx(compute + memory, rel=2e-3)
    assert estimate["headroom"] == pytest.approx(1 - estimate["ms"] / data["deadline_ms"])
    assert "estimated on BeagleBone Black (Bela)" in result.stderr + result.stdout
    again, _ = cli_json("bench", "single_mm", "--target", "bela", "--no-tune", "--seconds", "0.3",
                        "--out", str(tmp_path / "again"))
    assert again["estimate"]["instructions"] == estimate["instructions"]


@pytest.mark.parametrize("model,macs", [("single_mm", 1024 * 1024), ("basic_mlp", 3 * 1024 * 1024)])
def test_matrix_products_take_at_most_075_instructions_per_multiply_add_on_cortex_a8(compiled, model, macs):
    """The issue's goal, counted (deterministic, not a timing): NEON four lanes wide, the GEMV
    spec stepping 16 inputs at a time on ARMv7 (tuning_spec.py), no libm call (arm_fma.py)."""
    folder = compiled(model, "bela").folder
    assert count_per_call(folder, get_target("bela"), BELA_CACHE).instructions <= 0.75 * macs


STARTER = (ROOT / "project_templates/project/starter_model.py").read_text()


def starter_at(folder, frames: int):
    """The project template's starter model (a per-sample waveshaper) at `frames` per block."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model.py"
    model.write_text(re.sub(r"^BLOCK_SIZE = \d+", f"BLOCK_SIZE = {frames}", STARTER, count=1, flags=re.M))
    return model


def test_a_call_splits_into_the_kernels_and_the_runtime(tmp_path):
    """The estimate says how much of a call is IREE's runtime: the kernels' share grows with the
    block, the runtime's stays put; the dispatch table carries each dispatch's counted work."""
    runs = {}
    for frames in (16, 64):
        data, result = cli_json("bench", str(starter_at(tmp_path / str(frames), frames)), "--target", "gem", "--no-tune",
                                "--seconds", "0.2", "--out", str(tmp_path / f"out{frames}"))
        runs[frames] = data
        e = data["estimate"]
        assert e["kernel_instructions"] + e["runtime_instructions"] == e["instructions"]
        assert e["kernel_instructions"] > 0 and e["runtime_instructions"] > 0
        assert e["dispatches"] == len(data["dispatches"]) == sum(k["runs"] for k in e["per_dispatch"])
        assert sum(d["instructions"] for d in data["dispatches"]) == e["kernel_instructions"]
        assert all(d["runtime_instructions"] > 0 and d["estimate_ms"] > 0 for d in data["dispatches"])
        assert "in IREE's runtime" in result.stdout + result.stderr
    small, large = runs[16]["estimate"], runs[64]["estimate"]
    assert large["kernel_instructions"] > 2.5 * small["kernel_instructions"]
    assert abs(large["runtime_instructions"] - small["runtime_instructions"]) < 0.1 * small["runtime_instructions"]


def test_without_a_board_the_estimate_is_the_headline():
    from service.bench.bench import fit_verdict, verdict
    estimate = {"ms": 0.03, "deadline_ms": 0.363, "headroom": 1 - 0.03 / 0.363, "instructions": 35000,
                "kernel_instructions": 3000, "runtime_instructions": 32000, "dispatches": 2,
                "model": {"board": "PocketBeagle 2 (Bela Gem)"}}
    result = {"ran_on": "emulator", "emulated_cpu": "cortex-a53", "latency_ms": {"median": 0.5}, "deadline_ms": 0.363,
              "headroom": 1 - 0.5 / 0.363, "estimate": estimate}
    assert fit_verdict(result).startswith("estimated on PocketBeagle 2 (Bela Gem): fits: 0.03 ms")
    lines = verdict(result).splitlines()
    assert lines[0] == fit_verdict(result) and "32,000 in IREE's runtime" in lines[1]
    assert lines[2].startswith("emulator wall time: 0.5 ms") and "not a board timing" in lines[2]
    on_board = {**result, "ran_on": "board"}
    assert fit_verdict(on_board).startswith("does not fit: 0.5 ms")


def test_kernel_functions_are_named_by_the_one_load_offset_that_fits_them_all():
    from service.bench.instruction_count import name_entries
    symbols = {0x100: "main_dispatch_0_matmul", 0x200: "main_dispatch_1_add", 0x80: "iree_hal_executable_library_query"}
    assert name_entries([0x5000100, 0x5000200], symbols) == {0x5000100: "main_dispatch_0_matmul",
                                                             0x5000200: "main_dispatch_1_add"}
    assert name_entries([0x5000100, 0x5000300], symbols) == {}     # no offset puts both on a dispatch
    assert name_entries([0x5000100], {0x80: "iree_hal_executable_library_query"}) == {}


def test_calls_of_a_stateful_model_that_differ_a_little_are_still_counted():
    """Marks of iree-benchmark-module running a streaming WaveNet capture (instructions as counted
    on the emulated Cortex-A8; the other fields zero here): 3 marks before the calls, 4 per call,
    2 after. Its calls differ (each sees other state), so no two calls are marked the same way;
    a window spanning one call after the first is still found, and the first call is not taken."""
    from service.bench.instruction_count import steady_call
    one = [1534874, 1613468, 1614034, 5781114, 5781684, 5782255, 5782821, 5783390, 5783960]
    three = [1534874, 1613468, 1614034, 5781114, 5781684, 5782255, 5782821, 10009103, 10009673, 10010244,
             10010811, 14257551, 14258121, 14258693, 14259258, 14259827, 14260397]
    start, end = steady_call([(m, 0, 0, 0, 0) for m in one], [(m, 0, 0, 0, 0) for m in three])
    after_the_first = {three[j + 4] - three[j] for j in range(3, 11)}   # windows from call 2's marks on
    assert end - start == 4 and three[end] - three[start] in after_the_first
    growing = [(m + 20000 * i * i, 0, 0, 0, 0) for i, m in enumerate(three)]   # each call 4 % more than the last
    with pytest.raises(BenchError, match="no call was marked the same way twice"):
        steady_call([(m, 0, 0, 0, 0) for m in one], growing)


def test_an_emitc_call_splits_by_the_kernels_linked_into_the_program(tmp_path):
    """EmitC: the kernels are in the program itself; the dispatch symbols of its kernel object
    say where, and name each dispatch."""
    data, _ = cli_json("bench", str(starter_at(tmp_path / "m", 16)), "--target", "bela", "--format", "emitc",
                       "--no-tune", "--seconds", "0.2", "--out", str(tmp_path / "out"))
    e = data["estimate"]
    assert e["kernel_instructions"] + e["runtime_instructions"] == e["instructions"]
    assert e["dispatches"] == 2 and e["runtime_instructions"] > e["kernel_instructions"] > 0
    names = sorted(d["name"] for d in data["dispatches"])
    assert len(names) == 2 and all("_dispatch_" in n and not n.startswith("iree_") for n in names)
    assert sum(d["instructions"] for d in data["dispatches"]) == e["kernel_instructions"]
