"""What the Bela's kernels execute: the per-dispatch report read from their disassembly, and the
kernels linked with bela-iree's multiply-add in place of libm's fmaf (real compiler, real qemu)."""
from __future__ import annotations

import json
import subprocess

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


# a convolution (its 8-value bias is a constant IREE would inline into the dispatch), tanh and a
# softmax: IREE's approximations called fmaf and floorf per vector lane, the softmax fmaxf
SMALL_MODEL = """
import torch
from torch import nn

class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 3, padding=1)

    def forward(self, x):
        return torch.softmax(torch.tanh(self.conv(x.reshape(1, 1, 256))), dim=1)

def model():
    torch.manual_seed(0)
    return Small()

def example_input():
    return torch.rand(1, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1
"""


def test_bela_kernels_call_no_c_library_and_stay_accurate(tmp_path):
    """The kernels call nothing: tanh, exp and the softmax's max are inline NEON (arm_math.py;
    arm_fmaf.S and arm_floor_max.S remain for what IREE expands later); the build warns about
    nothing, and the result still matches PyTorch on the emulated Cortex-A8."""
    model = tmp_path / "small.py"
    model.write_text(SMALL_MODEL)
    data, _ = cli_json("bench", str(model), "--target", "bela", "--no-tune", "--seconds", "0.3", "--out", str(tmp_path / "b"))
    assert data["accuracy"]["within_tolerance"]
    kernels = json.loads((tmp_path / "b" / "kernels.json").read_text())
    assert data["kernels"] == kernels
    assert kernels and not any(d["calls"] for d in kernels), kernels
    compiled, _ = cli_json("compile", str(model), "--target", "bela", "--no-tune", "--out", str(tmp_path / "c"))
    assert not [w for w in compiled["warnings"] if "C library" in w]


# floorf, fmaxf and fminf of arm_floor_max.S against glibc's double floor/fmax/fmin, on the
# emulated Cortex-A8: integers, fractions either side of zero, 2^23 and beyond, infinities, NaN
FLOAT_CHECK = r"""
#include <math.h>
#include <stdio.h>
float floorf(float); float fmaxf(float, float); float fminf(float, float);
static int same(float got, double want) { return got == (float)want || (isnan(got) && isnan(want)); }
int main(void) {
    const float xs[] = {0.f, 0.5f, -0.5f, 1.f, -1.f, 2.7f, -2.7f, -3.f, 123.999f, -1e-4f, 8388607.5f,
                        -8388607.5f, 8388608.f, 3e9f, -3e9f, 1e20f, INFINITY, -INFINITY, NAN};
    const int n = sizeof xs / sizeof *xs;
    int wrong = 0;
    for (int i = 0; i < n; i++) {
        if (!same(floorf(xs[i]), floor(xs[i]))) printf("floorf(%g) = %g\n", xs[i], floorf(xs[i])), wrong++;
        for (int j = 0; j < n; j++) {
            if (!same(fmaxf(xs[i], xs[j]), fmax(xs[i], xs[j]))) printf("fmaxf(%g, %g)\n", xs[i], xs[j]), wrong++;
            if (!same(fminf(xs[i], xs[j]), fmin(xs[i], xs[j]))) printf("fminf(%g, %g)\n", xs[i], xs[j]), wrong++;
        }
    }
    printf("%d wrong\n", wrong);
    return wrong != 0;
}
"""


def test_neon_floor_and_max_agree_with_the_c_library(tmp_path):
    from service.pipeline.arm_fma import SOURCES
    from service.pipeline.tools import system_tool
    gcc = system_tool("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf")
    (tmp_path / "check.c").write_text(FLOAT_CHECK)
    subprocess.run([gcc, "-O1", "-fno-builtin", "-mfpu=neon", "-mfloat-abi=hard", "-o", str(tmp_path / "check"),
                    str(tmp_path / "check.c"), *[str(s) for s in SOURCES if "floor" in s.name], "-lm"], check=True)
    run = subprocess.run(["qemu-arm", "-cpu", "cortex-a8", "-L", "/usr/arm-linux-gnueabihf", str(tmp_path / "check")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip().endswith("0 wrong"), run.stdout
