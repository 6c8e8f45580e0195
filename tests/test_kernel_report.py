"""What the Bela's kernels execute: the per-dispatch report read from their disassembly, and the
kernels linked with bela-iree's multiply-add in place of libm's fmaf (real compiler, real qemu)."""
from __future__ import annotations

import json

from service.pipeline.kernel_report import classify, library_call_warnings, parse_disassembly

from .conftest import cli_json

# objdump -d --no-show-raw-insn of a dispatch whose loop calls libm's fmaf through the PLT
DISASSEMBLY = """
0000020c <fmaf@plt>:
 20c:\tadd\tip, pc, #0, 12
00000280 <main$async_dispatch_1_matmul_f32>:
 280:\tpush\t{r4, r5, lr}
 284:\tvld1.32\t{d18-d19}, [r1 :128]!
 288:\tvmla.f32\tq7, q9, q11
 28c:\tbne\t284 <main$async_dispatch_1_matmul_f32+0x4>
 290:\tvmov.f32\ts0, s27
 294:\tbl\t20c <fmaf@plt>
 298:\tvadd.f32\ts0, s0, s1
 29c:\tcmp\tr0, #8
 2a0:\tblt\t290 <main$async_dispatch_1_matmul_f32+0x10>
 2a4:\tbl\t2c0 <helper>
 2a8:\tpop\t{r4, r5, pc}
000002c0 <helper>:
 2c0:\tbx\tlr
"""


def test_the_report_finds_loops_calls_and_the_neon_vfp_mix():
    [dispatch] = [r.to_json() for r in parse_disassembly(DISASSEMBLY)]
    assert dispatch["instructions"] == 11
    assert (dispatch["neon"], dispatch["vfp"]) == (2, 2)
    assert dispatch["calls"] == {"fmaf": 1, "helper": 1}
    assert dispatch["calls_in_loops"] == {"fmaf": 1}
    assert dispatch["library_calls"] == ["fmaf"] and dispatch["library_calls_in_loops"] == {"fmaf": 1}
    [warning] = library_call_warnings([dispatch])
    assert "main$async_dispatch_1_matmul_f32 calls the C library: fmaf (1 call sites), 1 of them inside" in warning


def test_instructions_are_told_apart():
    assert classify("vmla.f32", "q7, q9, q11") == "neon"
    assert classify("vld1.32", "{d22[]-d23[]}, [r3 :32]") == "neon"
    assert classify("vadd.f32", "d0, d16, d1") == "neon"
    assert classify("vmla.f32", "s2, s0, s1") == "vfp"
    assert classify("vadd.f64", "d0, d1, d2") == "vfp"
    assert classify("vldr", "d16, [r0]") == "vfp"
    assert classify("add", "r0, r0, #4") is None


def test_bela_kernels_call_no_c_library_and_stay_accurate(tmp_path):
    """basic_mlp's tanh was 144 calls to libm's fmaf per dispatch; linked with our multiply-add,
    the kernels import nothing, the build warns about nothing, and the result still matches PyTorch
    on emulated Cortex-A8."""
    data, _ = cli_json("bench", "basic_mlp", "--target", "bela", "--no-tune", "--seconds", "0.3", "--out", str(tmp_path))
    assert data["accuracy"]["within_tolerance"]
    kernels = json.loads((tmp_path / "kernels.json").read_text())
    assert data["kernels"] == kernels
    assert not any(d["library_calls"] for d in kernels)
    assert any(d["calls"].get("fmaf") for d in kernels)        # bound to ours, inside the library
    compiled, _ = cli_json("compile", "basic_mlp", "--target", "bela", "--no-tune", "--out", str(tmp_path / "c"))
    assert not [w for w in compiled["warnings"] if "C library" in w]
