"""Rewrites IREE's approximations of tanh, exp, sin... into what a Cortex-A8 executes inline.

Run by iree-compile on each executable's MLIR (stdin to stdout) after IREE's own math-transform
pass has expanded the math functions (arm_math.py sets both up for the Bela): every
`math.fma` becomes a multiply then an add (the core has no fused multiply-add, so LLVM called
fmaf once per vector lane), and every f32 `math.floor` becomes a conversion to an integer and
back, corrected for negative fractions (the core has no rounding instruction, so LLVM called
floorf per lane). Both then vectorize to a few NEON instructions with no call.

Standalone (the standard library only, no package imports): iree-compile starts it once per
executable with `python -I -S`, which keeps that start short.
"""
from __future__ import annotations

import re
import sys

_VALUE = r"%[A-Za-z0-9_$.\-]+"
_TYPE = r"f32|vector<[0-9x]+xf32>"
_FMA = re.compile(rf"^(?P<indent>\s*)%(?P<name>[A-Za-z0-9_$.\-]+) = math\.fma (?P<a>{_VALUE}), (?P<b>{_VALUE}), "
                  rf"(?P<c>{_VALUE})(?: fastmath<[a-z,]+>)? : (?P<type>{_TYPE})(?P<loc> loc\(.*\))?$")
_FLOOR = re.compile(rf"^(?P<indent>\s*)%(?P<name>[A-Za-z0-9_$.\-]+) = math\.floor (?P<x>{_VALUE})"
                    rf"(?: fastmath<[a-z,]+>)? : f32(?P<loc> loc\(.*\))?$")
TWO_TO_23 = "8.388608e+06"     # from 2^23 on, every f32 is an integer: floor(x) = x


def _fresh(kind: str, name: str) -> str:
    """A new SSA name from the rewritten op's own (a name starting with a digit must be all digits)."""
    return f"%bela_{kind}_{name.replace('$', '_').replace('.', '_').replace('-', '_')}"


def _fma(m: re.Match) -> list[str]:
    indent, loc, t = m["indent"], m["loc"] or "", m["type"]
    product = _fresh("mul", m["name"])
    return [f"{indent}{product} = arith.mulf {m['a']}, {m['b']} : {t}{loc}",
            f"{indent}%{m['name']} = arith.addf {product}, {m['c']} : {t}{loc}"]


def _floor(m: re.Match) -> list[str]:
    indent, loc, x, name = m["indent"], m["loc"] or "", m["x"], m["name"]
    v = {k: _fresh(f"floor_{k}", name) for k in ("int", "trunc", "above", "one", "less", "floor", "abs", "big", "small")}
    return [f"{indent}{v['int']} = arith.fptosi {x} : f32 to i32{loc}",           # toward zero
            f"{indent}{v['trunc']} = arith.sitofp {v['int']} : i32 to f32{loc}",
            f"{indent}{v['above']} = arith.cmpf ogt, {v['trunc']}, {x} : f32{loc}",  # a negative fraction
            f"{indent}{v['one']} = arith.constant 1.000000e+00 : f32{loc}",
            f"{indent}{v['less']} = arith.subf {v['trunc']}, {v['one']} : f32{loc}",
            f"{indent}{v['floor']} = arith.select {v['above']}, {v['less']}, {v['trunc']} : f32{loc}",
            f"{indent}{v['abs']} = math.absf {x} : f32{loc}",
            f"{indent}{v['big']} = arith.constant {TWO_TO_23} : f32{loc}",
            f"{indent}{v['small']} = arith.cmpf olt, {v['abs']}, {v['big']} : f32{loc}",  # false for NaN, inf
            f"{indent}%{name} = arith.select {v['small']}, {v['floor']}, {x} : f32{loc}"]


def rewrite(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        if "math.fma" in line and (m := _FMA.match(line)):
            lines += _fma(m)
        elif "math.floor" in line and (m := _FLOOR.match(line)):
            lines += _floor(m)
        else:
            lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(rewrite(sys.stdin.read()))
