"""runtime/'s C library (bela_iree_model_run) on emulated Bela: every zoo model's --target bela
vmfb, and its EmitC module compiled into the program, run through it under qemu-arm -cpu
cortex-a8, against PyTorch."""
import subprocess
from pathlib import Path

import numpy as np
import pytest

import zoo
from service.bench.run import tolerance
from service.bench.emitc import emitc_program, run_program
from service.bench.runtime_tools import emulator
from service.pipeline.elf_check import glibc_versions_needed
from service.pipeline.targets import TARGETS
from service.runtimes.toolchain import OLDEST_GLIBC, toolchain_for

from .conftest import UNROLLED

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
ARMHF = ["CC=arm-linux-gnueabihf-gcc -march=armv7-a -mfpu=neon -mfloat-abi=hard", "AR=arm-linux-gnueabihf-ar"]


@pytest.fixture(scope="session")
def run_model_armv7(runtime, tmp_path_factory) -> Path:
    """tests/run_model.c for Bela, built with Debian's armhf compiler (standing in for the
    board's) against the armv7 runtime `runtime build` makes."""
    build = tmp_path_factory.mktemp("run-model-armv7")
    subprocess.run(["make", "-s", "-C", str(RUNTIME), "test-program", f"IREE_RUNTIME_DIR={runtime('bela').folder}",
                    f"BUILD={build}", "LOADERS=system", *ARMHF], check=True, capture_output=True)
    return build / "run_model"


def run_through_library(program: list[str], folder: Path, work: Path, runs: int = 3) -> np.ndarray:
    """Runs a compile folder's model.vmfb on its reference inputs; returns the output."""
    return run_program(program, folder, work, runs, module=str(folder / "model.vmfb"))[0]


@pytest.mark.slow
@pytest.mark.parametrize("model", zoo.names())
def test_runtime_library_runs_every_zoo_model_on_emulated_cortex_a8(compiled, run_model_armv7, model, tmp_path):
    folder = compiled(model, "bela").folder
    output = run_through_library([*emulator(TARGETS["bela"]), str(run_model_armv7)], folder, tmp_path)
    expected = np.load(folder / "expected.npy")
    assert np.abs(output - expected).max() <= tolerance(expected), model


def test_every_board_library_links_against_the_oldest_bela_glibc(runtime, compiled, tmp_path):
    """A Stretch board's link, here: tests/run_model.c linked with the install's libraries and
    runtime/ against glibc 2.24 (zig, as `runtime build` does) asks for no newer glibc, and runs."""
    toolchain = toolchain_for(TARGETS["bela"])
    compilers = toolchain.compilers(tmp_path / "toolchain")
    subprocess.run(["make", "-s", "-C", str(RUNTIME), "test-program", f"IREE_RUNTIME_DIR={runtime('bela').folder}",
                    f"BUILD={tmp_path}", "LOADERS=system static", f"CC={compilers['CC']}", f"AR={compilers['AR']}"],
                   check=True, capture_output=True)
    program = tmp_path / "run_model"
    assert max(glibc_versions_needed(program)) <= tuple(int(x) for x in OLDEST_GLIBC.split("."))
    folder = compiled("siren_mlp", "bela").folder   # sin() in every layer: libm from the board
    output = run_through_library([*emulator(TARGETS["bela"]), str(program)], folder, tmp_path)
    expected = np.load(folder / "expected.npy")
    assert np.abs(output - expected).max() <= tolerance(expected)


# simple_rnn's EmitC form unrolls its 1024 steps (minutes to build for the board)
EMITC_MODELS = [m for m in zoo.names() if m not in UNROLLED]


@pytest.mark.slow
@pytest.mark.parametrize("model", EMITC_MODELS)
def test_emitc_module_runs_every_zoo_model_on_emulated_cortex_a8(compiled, runtime, model, tmp_path):
    """IREE 3.13's module.c packs import calls for 64-bit; bela-iree lays them out as the 32-bit
    runtime reads them (service/pipeline/emitc_fix.py). Without that, every model fails here
    ('ref type mismatch' in hal.fence.join, or a binding table without its buffer)."""
    folder = compiled(model, "bela", "emitc").folder
    program = emitc_program(folder, TARGETS["bela"], tmp_path)
    output, _ = run_program([*emulator(TARGETS["bela"]), str(program)], folder, tmp_path, 3)
    expected = np.load(folder / "expected.npy")
    assert np.abs(output - expected).max() <= tolerance(expected), model
