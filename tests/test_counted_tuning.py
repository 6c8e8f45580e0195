"""ARM targets without a board choose their flag set by the work counted on the board's
emulated core (bench/counted_tuning.py), and say which and why."""
from __future__ import annotations

from service.bench.counted_tuning import choose_by_count
from service.pipeline.targets import get_target

from .conftest import cli_json


def test_the_fewest_instructions_win_and_the_reason_says_so():
    rows = {"default": {"instructions": 2_000_000, "dram_bytes": 10},
            "data-tiling": {"instructions": 1_500_000, "dram_bytes": 90},
            "ukernels": {"error": "did not compile"}}
    chosen, why = choose_by_count(rows, get_target("bela"))
    assert chosen == "data-tiling"
    assert "emulated Cortex-A8" in why and "data-tiling 1.5 M against default 2 M" in why
    # within half a percent is the same work: IREE's defaults stay, even against fewer DRAM bytes
    tie = {"ukernels": {"instructions": 1000, "dram_bytes": 64}, "default": {"instructions": 1004, "dram_bytes": 128}}
    assert choose_by_count(tie, get_target("gem"))[0] == "default"
    close = {"ukernels": {"instructions": 1000, "dram_bytes": 64}, "data-tiling": {"instructions": 1001, "dram_bytes": 9},
             "default": {"instructions": 2000, "dram_bytes": 1}}
    assert choose_by_count(close, get_target("gem"))[0] == "data-tiling"
    same = {"data-tiling": {"instructions": 1000, "dram_bytes": 1000}, "data-tiling+ukernels": {"instructions": 1000,
            "dram_bytes": 999}, "default": {"instructions": 2000, "dram_bytes": 1}}
    assert choose_by_count(same, get_target("bela"))[0] == "data-tiling"     # fewer flags, same work
    assert choose_by_count({"default": {"error": "x"}}, get_target("bela"))[0] == "default"


def test_bench_on_bela_without_a_board_chooses_by_counted_work(tmp_path):
    data, _ = cli_json("bench", "single_mm", "--target", "bela", "--seconds", "0.3", "--out", str(tmp_path))
    tuning = data["tuning"]
    assert tuning["basis"] == "counted" and data["variant"] == tuning["chosen"]
    counted = {name: row["instructions"] for name, row in tuning["variants"].items() if "instructions" in row}
    assert set(counted) >= {"default", "data-tiling"}
    assert counted[tuning["chosen"]] == min(counted.values())
    assert data["estimate"]["instructions"] == counted[tuning["chosen"]]   # what runs is what was counted
