"""bench: latency against the deadline, accuracy against PyTorch, memory, dispatches, peers."""
import subprocess

import pytest

from .conftest import cli_json

CONTRACT = {"model", "target", "ran_on", "latency_ms", "deadline_ms", "headroom", "accuracy", "memory", "dispatches"}


def test_host_bench_has_every_field_and_is_accurate(tmp_path):
    data, result = cli_json("bench", "basic_mlp", "--target", "host", "--seconds", "0.3", "--out", str(tmp_path))
    assert CONTRACT <= set(data)
    assert data["ran_on"] == "host" and "note" not in data
    latency = data["latency_ms"]
    assert 0 < latency["min"] <= latency["median"] <= latency["p99"] <= latency["max"]
    assert data["deadline_ms"] == pytest.approx(1000 * 1024 / 44100)
    assert data["headroom"] == pytest.approx(1 - latency["median"] / data["deadline_ms"])
    assert data["accuracy"]["reference"] == "torch"
    assert 0 <= data["accuracy"]["max_abs_err"] <= data["accuracy"]["tolerance"]
    assert data["memory"]["artifact_bytes"] > 3 * 1024 * 1024 * 4   # the weights
    assert data["memory"]["peak_bytes"] >= 3 * 1024 * 1024 * 4
    # slowest first; the three matrix-vector products are nearly all the time (the rest: broadcasts of the row)
    assert data["dispatches"] and "matmul" in data["dispatches"][0]["name"]
    assert sum(d["percent"] for d in data["dispatches"] if "matmul" in d["name"]) > 90
    assert sum(d["percent"] for d in data["dispatches"]) == pytest.approx(100, abs=1)
    assert "fits:" in result.stderr and "headroom" in result.stderr
    assert "peers" not in data


def test_block_size_and_sample_rate_set_the_deadline(tmp_path):
    data, result = cli_json("bench", "single_mm", "--target", "host", "--seconds", "0.2", "--block-size", "16",
                            "--sample-rate", "48000", "--out", str(tmp_path))
    assert data["deadline_ms"] == pytest.approx(1000 * 16 / 48000)
    fits = data["latency_ms"]["median"] <= data["deadline_ms"]
    assert ("does not fit" in result.stderr) != fits


def test_emulated_arm_bench_is_marked_and_accurate(tmp_path):
    data, result = cli_json("bench", "single_mm", "--target", "gem", "--seconds", "0.5", "--out", str(tmp_path))
    assert data["ran_on"] == "emulator"
    assert "not board timings" in data["note"]
    assert data["accuracy"]["max_abs_err"] <= data["accuracy"]["tolerance"]
    assert "emulated" in result.stderr


def test_bela_bench_without_a_board_runs_under_emulated_cortex_a8(tmp_path, runtime):
    runtime("bela")   # built once per machine (minutes), then cached
    data, result = cli_json("bench", "basic_mlp", "--target", "bela", "--seconds", "0.5", "--out", str(tmp_path))
    assert data["ran_on"] == "emulator" and "not board timings" in data["note"]
    assert data["emulated_cpu"] == "cortex-a8"
    assert data["accuracy"]["max_abs_err"] <= data["accuracy"]["tolerance"]
    assert data["latency_ms"]["median"] > 0 and "emulated" in result.stderr


def test_model_that_fails_to_compile_gives_a_clear_error(tmp_path):
    model = tmp_path / "model.py"
    model.write_text("import torch\n"
                     "class M(torch.nn.Module):\n"
                     "    def forward(self, x):\n"
                     "        return torch.igamma(x.abs() + 1, x.abs() + 2)\n"   # IREE has no lowering for igamma
                     "model = M()\nexample_input = torch.ones(1, 4)\n")
    data, result = cli_json("bench", str(model), "--target", "host", check=False)
    assert result.returncode == 1
    assert data["error"]["stage"] == "compile" and data["error"]["line"] == 4


def test_peers_are_measured_and_a_failing_peer_is_reported(tmp_path):
    model = tmp_path / "model.py"
    model.write_text("import torch\n"
                     "class M(torch.nn.Module):\n"
                     "    def __init__(self):\n"
                     "        super().__init__()\n"
                     "        self.linear = torch.nn.Linear(256, 256)\n"
                     "    def forward(self, x):\n"
                     "        if torch.jit.is_tracing():\n"
                     "            raise RuntimeError('this model cannot be traced')\n"
                     "        return torch.tanh(self.linear(x))\n"
                     "def model():\n    torch.manual_seed(0)\n    return M()\n"
                     "example_input = torch.ones(1, 256)\n")
    data, result = cli_json("bench", str(model), "--target", "host", "--peers", "--seconds", "0.2",
                            "--out", str(tmp_path / "out"))
    peers = data["peers"]
    assert set(peers) == {"torch_eager", "torchscript", "onnxruntime"}
    assert "cannot be traced" in peers["torchscript"]["error"]
    for name in ("torch_eager", "onnxruntime"):
        assert peers[name]["median_ms"] > 0
        # against ours timed in turns with the peers, not the bench's own run
        assert peers[name]["ours_speedup"] == pytest.approx(peers[name]["median_ms"] / data["side_by_side_ms"])
    assert "failed" in result.stderr


def test_emitc_bench_measures_the_emitc_program_not_the_vmfb(tmp_path):
    # basic_mlp's dispatches take push constants: IREE 3.13's EmitC misplaces them on any target
    # unless bela-iree lays the call out (service/pipeline/emitc_fix.py)
    data, result = cli_json("bench", "basic_mlp", "--target", "host", "--format", "emitc", "--seconds", "0.3",
                            "--out", str(tmp_path))
    assert data["format"] == "emitc" and data["ran_on"] == "host"
    assert data["accuracy"]["max_abs_err"] <= data["accuracy"]["tolerance"]
    assert not (tmp_path / "model.vmfb").exists()
    assert data["memory"]["artifact_bytes"] == (tmp_path / "libbela_iree_module.a").stat().st_size
    assert data["memory"]["module_c_bytes"] == (tmp_path / "module.c").stat().st_size
    assert data["latency_ms"]["median"] > 0 and data["samples"] >= 20


def test_emitc_bench_on_emulated_bela_is_marked(tmp_path, runtime):
    runtime("bela")
    data, _ = cli_json("bench", "log_spectrum", "--target", "bela", "--format", "emitc", "--seconds", "0.3",
                       "--out", str(tmp_path))
    assert data["format"] == "emitc" and data["ran_on"] == "emulator" and data["emulated_cpu"] == "cortex-a8"
    assert data["accuracy"]["max_abs_err"] <= data["accuracy"]["tolerance"]
    # the board estimate counts the EmitC program's own calls on the emulated Cortex-A8
    estimate = data["estimate"]
    assert "error" not in estimate and "not a measurement" in estimate["note"]
    assert estimate["instructions"] > 100_000 and estimate["dram_bytes"] >= 0 and estimate["ms"] > 0
    # IREE's log approximation fuses multiply-adds and floors: on the Cortex-A8 they are NEON code
    # or our routines under private names, never the C library's (arm_math.py, arm_fma.py)
    undefined = subprocess.run(["arm-linux-gnueabihf-nm", "-u", str(tmp_path / "libbela_iree_module.a")],
                               capture_output=True, text=True, check=True).stdout.split()
    assert not {"fmaf", "floorf", "fmaxf", "fminf"} & set(undefined)


def test_a_format_the_board_bench_cannot_run_is_refused(tmp_path):
    data, result = cli_json("bench", "single_mm", "--target", "gem", "--format", "emitc", "--board",
                            "root@127.0.0.1:9", "--out", str(tmp_path), check=False)
    assert result.returncode == 1 and "not emitc" in data["error"]["message"]
    assert not list(tmp_path.iterdir())
