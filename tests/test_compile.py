"""The compiler: every zoo model onto every board, checked by running it where we can."""
import time
from pathlib import Path

import numpy as np
import pytest

import zoo
from service.bench.run import max_abs_error, run_module, tolerance
from service.pipeline.elf_check import glibc_versions_needed, inspect_armv7_kernels
from service.runtimes.emitc import library_query_name
from service.pipeline.targets import TARGETS

from .conftest import UNROLLED, cli, cli_json

MODELS = zoo.names()


# bbai64 is gem's pipeline with -mcpu=cortex-a72 (same triple, same runtime, same emulator):
# a model of each kind stands for the zoo there, to keep the suite within its time
BBAI64_MODELS = ("single_mm", "transformer_block", "resnet_1d", "lstm_amp", "mdrnn_control")
RUN_CASES = [(m, t) for m in MODELS for t in ("host", "gem", "bbai64", "bela") if t != "bbai64" or m in BBAI64_MODELS]


@pytest.mark.slow
@pytest.mark.parametrize("model,target", RUN_CASES)
def test_artifact_runs_and_matches_pytorch(compiled, model, target):
    """host natively; gem and bbai64 under qemu-aarch64 (cortex-a53/-a72) with the aarch64 runtime
    wheel's tools; bela under qemu-arm -cpu cortex-a8 with the runtime `runtime build` makes."""
    result = compiled(model, target)
    folder = result.folder
    output = run_module(folder, TARGETS[target])
    expected = np.load(folder / "expected.npy")
    assert output.size == expected.size
    assert max_abs_error(output, folder) <= tolerance(expected), (model, target, max_abs_error(output, folder))


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_bela_artifact_is_armv7_hard_float_neon_and_loadable(compiled, model, tmp_path):
    result = compiled(model, "bela")
    assert "--iree-llvmcpu-link-embedded=false" in result.flags
    assert "--iree-llvmcpu-debug-symbols=false" in result.flags
    report = inspect_armv7_kernels(result.artifacts[0], tmp_path)
    assert report.ok, report.problems()
    assert "__aeabi_unwind_cpp_pr0" not in report.imports
    # the kernels ask no glibc version at all: they load on any Bela image
    assert glibc_versions_needed(tmp_path / "kernels.so") == []


# EmitC on host, aarch64 (gem; bbai64 differs by -mcpu only) and armv7; an unrolled form
# (conftest.UNROLLED) takes minutes per target
EMITC_CASES = [(m, t) for m in MODELS for t in ("host", "gem", "bela") if m not in UNROLLED]


@pytest.mark.slow
@pytest.mark.parametrize("model,target", EMITC_CASES)
def test_emitc_writes_module_c_and_static_kernels(compiled, model, target):
    result = compiled(model, target, "emitc")
    names = sorted(p.name for p in result.artifacts)
    assert names == ["kernels.h", "kernels.o", "module.c"]
    folder = result.folder
    assert "module_create" in (folder / "module.c").read_text(errors="replace")[:20000]
    assert library_query_name(folder / "kernels.h")  # module_linked_library_query, or the single executable's
    machine = {"x86_64": b"\x3e\x00", "aarch64": b"\xb7\x00", "armv7": b"\x28\x00"}[TARGETS[target].arch]
    header = (folder / "kernels.o").read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[18:20] == machine
    assert not result.warnings


def test_vmvx_backend_runs(compiled):
    result = compiled("single_mm", "host", "vmfb", "vmvx")
    folder = result.folder
    assert max_abs_error(run_module(folder, TARGETS["host"]), folder) <= tolerance(np.load(folder / "expected.npy"))


def fresh_copy(zoo_name: str, folder: Path, old: str, new: str) -> Path:
    """A zoo model changed a little, so no cache of this test session already holds it."""
    source = zoo.model_path(zoo_name).read_text()
    assert old in source
    path = folder / f"{zoo_name}.py"
    path.write_text(source.replace(old, new))
    return path


def test_compile_json_contract_and_cache(tmp_path):
    model = fresh_copy("basic_mlp", tmp_path, "BLOCK_SIZE = 1024", "BLOCK_SIZE = 512")
    data, _ = cli_json("compile", str(model), "--target", "host", "--out", str(tmp_path / "a"))
    assert set(data) >= {"model", "target", "format", "backend", "artifacts", "flags", "seconds", "cached"}
    assert (data["model"], data["target"], data["format"], data["backend"]) == ("basic_mlp", "host", "vmfb", "llvm-cpu")
    assert data["variant"] in data["tuning"] and "median_ms" in data["tuning"][data["variant"]]
    assert set(data["seconds"]) == {"export", "compile"}
    assert Path(data["artifacts"][0]).name == "model.vmfb" and Path(data["artifacts"][0]).exists()
    assert "--iree-llvmcpu-target-cpu=host" in data["flags"]
    started = time.perf_counter()
    again, _ = cli_json("compile", str(model), "--target", "host", "--out", str(tmp_path / "b"))
    assert again["cached"] is True and data["cached"] is False
    assert sum(again["seconds"].values()) < 0.5 and time.perf_counter() - started < 5
    assert Path(again["artifacts"][0]).read_bytes() == Path(data["artifacts"][0]).read_bytes()


def test_emitc_for_bela_lays_out_import_calls_for_the_32_bit_runtime(tmp_path):
    data, result = cli_json("compile", "log_spectrum", "--target", "bela", "--format", "emitc", "--out", str(tmp_path))
    assert data["warnings"] == [] and "warning" not in result.stderr
    module = (tmp_path / "module.c").read_text()
    # hal.fence.join's variadic fences: aligned as the runtime aligns a reference, not to 8
    join = module[module.index("module_call_0ICrD_r_2_import_shim(iree_vm_stack_t* v1, iree_vm_function_t* v2, "
                                "int64_t v3, int32_t v4, iree_vm_ref_t* v5, iree_vm_ref_t* v6, iree_vm_ref_t* v7) {"):]
    join = join[:join.index("\n}\n")]
    assert join.count("iree_alignof(iree_vm_ref_t))") >= 6 and "sizeof(iree_vm_ref_t);" in join


def test_compile_that_hangs_is_stopped(tmp_path):
    model = fresh_copy("transformer_block", tmp_path, "nhead=4", "nhead=8")
    data, result = cli_json("compile", str(model), "--target", "bbai64", "--timeout", "0.2",
                            "--out", str(tmp_path / "out"), check=False)
    assert result.returncode == 1
    assert "did not finish within 0.2 s" in data["error"]["message"]
    assert not (tmp_path / "out" / "model.vmfb").exists()


def test_unsupported_op_names_the_op_and_the_model_line(tmp_path):
    model = tmp_path / "model.py"
    model.write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        y = x * 2\n"
        "        return torch.igamma(y.abs() + 1, y.abs() + 2)\n"
        "model = M()\n"
        "example_input = torch.ones(1, 8)\n")
    data, result = cli_json("compile", str(model), "--target", "host", "--out", str(tmp_path / "out"), check=False)
    assert result.returncode == 1
    error = data["error"]
    assert error["stage"] == "compile"
    assert "igamma" in error["message"]
    assert Path(error["file"]).name == "model.py" and error["line"] == 5


def test_broken_model_file_points_at_the_line(tmp_path):
    model = tmp_path / "model.py"
    model.write_text("import torch\nmodel = torch.nn.Linear(4, 4)\nexample_input = torch.ones(1, 4\n")
    data, result = cli_json("compile", str(model), "--target", "host", check=False)
    assert result.returncode == 1
    assert data["error"]["stage"] == "export" and "syntax error" in data["error"]["message"]
    assert data["error"]["line"] == 3
    assert "model.py:3" in result.stderr


def test_exception_in_model_points_at_the_line(tmp_path):
    model = tmp_path / "model.py"
    model.write_text("import torch\n\ndef model():\n    return torch.nn.Linear(4, 4, bais=True)\n\n"
                     "example_input = torch.ones(1, 4)\n")
    data, _ = cli_json("compile", str(model), "--target", "host", check=False)
    assert data["error"]["line"] == 4 and "bais" in data["error"]["message"]


def test_unknown_target_is_a_usage_error():
    result = cli("compile", "basic_mlp", "--target", "pi5", check=False)
    assert result.returncode == 2 and "invalid choice" in result.stderr
