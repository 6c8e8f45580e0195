"""IREE tuning spec for the packed single-row matmuls (GEMVs) of rewrites/linear.py, and for
the many-row matmuls on ARMv7 (MATMUL_TILE).

A Linear layer applied to one row (an MLP over a block, an encoder's projection) is a
matrix-vector product: it reads every weight once and is bound by memory. IREE's own choice for
it keeps one vector accumulator per 16 outputs and waits on every multiply-add (FMA latency,
not bandwidth, sets its speed: single_mm 75 us on this machine). rewrites/linear.py packs such weights
in blocks of GEMV_BLOCK output columns, each block one contiguous stream; this spec tells IREE's
CPU code generation to keep a whole block in registers (GEMV_BLOCK / lanes independent
accumulators) and step the reduction one input at a time: 48 us, memory speed.

The spec is IREE's documented tuning interface (`--iree-codegen-tuning-spec-path`, a transform
dialect module matched against each dispatch's ops). It matches only batch matmuls of one row by
GEMV_BLOCK columns, the shape of the packed form, so it leaves every other op to IREE.
"""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from . import arm_math, cache
from .targets import Target

GEMV_BLOCK = 128   # output columns per packed block (rewrites/linear.py packs, the spec matches this width)

# How many outputs one vector step keeps in flight, by register file: 32 x 16 floats with
# AVX-512 (8 accumulators), 16 x 8 with AVX2, 32 x 4 on AArch64 NEON, 16 x 4 on ARMv7 NEON.
VECTOR_OUTPUTS = {"x86_64-avx512": 128, "x86_64": 64, "aarch64": 32, "armv7": 16}
# How many inputs one step of the reduction takes. One is memory speed on the host; on the
# Cortex-A8 every step also pays its address and counter updates and its branch, which 16
# inputs per step spread thin: single_mm 1.05 M -> 0.75 M instructions per call counted on the
# emulated core (1.00 -> 0.72 per multiply-add; benchmarks/instructions_per_mac.md).
REDUCTION_STEP = {"armv7": 16}
# Matmuls of many rows (a Linear over a block) on ARMv7: rows x outputs kept in registers per
# step of one input. 4 x 8 is 8 q-register accumulators, 2 for the weights' row and the inputs'
# broadcasts: within NEON's 16 q registers, 19 instructions per 32 multiply-adds in the loop.
# IREE's own 4 x 4 x 4 takes 50 per 64 (and 98 per 64 on a Linear's [out, in] weight, which
# arm_math.py has IREE keep in [in, out] order): a 1024x256 @ 256x256 product 1.35 -> 0.60
# instructions per multiply-add counted on the emulated Cortex-A8.
MATMUL_TILE = {"armv7": (4, 8)}
MATMUL_DISTRIBUTION = 64   # rows and outputs per workgroup
# A convolution becomes a batch matmul of its weights [out, in x taps] by the input's columns
# [in x taps, time]; time is rarely a multiple of 4 (simple_conv_1d: 250 after its pooling), and
# IREE's own tile then takes two columns at a time in half-width registers (0.94 per
# multiply-add). 2 rows x 10 columns (3 q registers a row) when time is a multiple of 10, the
# reduction in blocks of 256 inputs so that a workgroup's columns stay in the 256 KB L2 (all
# 2560 at once: 554 MB from DRAM a call, more than IREE's 235): simple_conv_1d 318 -> 184 M
# instructions and 235 -> 104 MB per call (0.62 per multiply-add; estimated 824 -> ~440 ms).
CONV_TILE = {"armv7": (2, 10)}
CONV_DISTRIBUTION = (64, 10)   # output channels and time steps per workgroup
CONV_CACHE_REDUCTION = 256

HEADER = """\
// bela-iree: single-row matmuls (see service/pipeline/tuning_spec.py)
module @bela_iree_gemv attributes {{ transform.with_named_sequence }} {{
  transform.named_sequence @apply_op_config(%op: !transform.any_op {{transform.readonly}},
                                            %config: !transform.any_param {{transform.readonly}}) {{
    transform.annotate %op "compilation_info" = %config : !transform.any_op, !transform.any_param
    transform.yield
  }}
"""

CONFIG = """\
    %config = transform.param.constant #iree_codegen.compilation_info<
      lowering_config = #iree_cpu.lowering_config<distribution = {distribution},{cache}
        vector_common_parallel = {vector}, vector_reduction = {reduction}>,
      translation_info = #iree_codegen.translation_info<pipeline = #iree_cpu.pipeline<DoubleTilingExpert>>
    > -> !transform.any_param
    transform.yield %op, %config : !transform.any_op, !transform.any_param
  }}
"""

# rewrites/linear.py's packed Linear: [blocks, 1, in] x [blocks, in, GEMV_BLOCK]
PACKED = """\
  transform.named_sequence @match_packed(%op: !transform.any_op {{transform.readonly}})
      -> (!transform.any_op, !transform.any_param) {{
    transform.match.operation_name %op ["linalg.batch_matmul"] : !transform.any_op
    %row = transform.get_operand %op[0] : (!transform.any_op) -> !transform.any_value
    %weights = transform.get_operand %op[1] : (!transform.any_op) -> !transform.any_value
    transform.iree.match.cast_compatible_type %row = tensor<?x1x?xf32> : !transform.any_value
    transform.iree.match.cast_compatible_type %weights = tensor<?x?x{block}xf32> : !transform.any_value
"""

# a row times a stored [in, out] matrix (a recurrent step's h @ w_hh_t), out a multiple of lanes
ROW = """\
  transform.named_sequence @match_row_{lanes}(%op: !transform.any_op {{transform.readonly}})
      -> (!transform.any_op, !transform.any_param) {{
    %batch, %m, %n, %k = transform.iree.match.contraction %op, lhs_type = f32, rhs_type = f32, output_type = f32,
      indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>,
                       affine_map<(d0, d1, d2) -> (d0, d1)>] : !transform.any_op -> !transform.param<i64>
    %one = transform.param.constant 1 : i64 -> !transform.param<i64>
    transform.match.param.cmpi eq %m, %one : !transform.param<i64>
    %weights = transform.get_operand %op[1] : (!transform.any_op) -> !transform.any_value
    transform.iree.match.dim_is_multiple_of %weights[1], {lanes} : !transform.any_value
"""

# many rows times a stored [in, out] matrix, rows and outputs multiples of the register tile
MATMUL = """\
  transform.named_sequence @match_matmul(%op: !transform.any_op {{transform.readonly}})
      -> (!transform.any_op, !transform.any_param) {{
    %batch, %m, %n, %k = transform.iree.match.contraction %op, lhs_type = f32, rhs_type = f32, output_type = f32,
      indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>,
                       affine_map<(d0, d1, d2) -> (d0, d1)>] : !transform.any_op -> !transform.param<i64>
    %rows = transform.get_operand %op[0] : (!transform.any_op) -> !transform.any_value
    transform.iree.match.dim_is_multiple_of %rows[0], {rows} : !transform.any_value
    %weights = transform.get_operand %op[1] : (!transform.any_op) -> !transform.any_value
    transform.iree.match.dim_is_multiple_of %weights[1], {outputs} : !transform.any_value
"""

# one batch of weights [out, in] times columns [in, time] (a convolution), time a multiple of the tile
BATCH_MATMUL = """\
  transform.named_sequence @match_conv_matmul(%op: !transform.any_op {{transform.readonly}})
      -> (!transform.any_op, !transform.any_param) {{
    %batch, %m, %n, %k = transform.iree.match.contraction %op, lhs_type = f32, rhs_type = f32, output_type = f32,
      indexing_maps = [affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>, affine_map<(d0, d1, d2, d3) -> (d0, d3, d2)>,
                       affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>] : !transform.any_op -> !transform.param<i64>
    %weights = transform.get_operand %op[0] : (!transform.any_op) -> !transform.any_value
    transform.iree.match.dim_is_multiple_of %weights[1], {rows} : !transform.any_value
    %columns = transform.get_operand %op[1] : (!transform.any_op) -> !transform.any_value
    transform.iree.match.dim_is_multiple_of %columns[2], {columns} : !transform.any_value
"""

ENTRY = """\
  transform.named_sequence @__kernel_config(%variant: !transform.any_op {{transform.consumed}}) -> !transform.any_op
      attributes {{ iree_codegen.tuning_spec_entrypoint }} {{
    %result = transform.foreach_match in %variant
      {matchers}
      : (!transform.any_op) -> !transform.any_op
    transform.yield %result : !transform.any_op
  }}
}}
"""


@functools.cache   # every compile asks; /proc/cpuinfo does not change
def vector_outputs(target: Target) -> int:
    if target.arch == "x86_64":
        host_has_avx512 = target.cpu == "host" and " avx512f " in Path("/proc/cpuinfo").read_text()
        return VECTOR_OUTPUTS["x86_64-avx512" if host_has_avx512 else "x86_64"]
    return VECTOR_OUTPUTS[target.arch]


def spec_text(target: Target) -> str:
    """Each matched product keeps `lanes` outputs in registers and steps its reduction
    REDUCTION_STEP inputs at a time (one, but on ARMv7); a recurrent step whose width is not a multiple of the widest config gets the
    widest that divides it."""
    lanes = vector_outputs(target)
    step = REDUCTION_STEP.get(target.arch, 1)
    parts = [HEADER.format(), PACKED.format(block=GEMV_BLOCK),
             CONFIG.format(cache="", distribution=f"[1, 0, {GEMV_BLOCK}, 0]", vector=f"[1, 1, {lanes}, 0]",
                           reduction=f"[0, 0, 0, {step}]")]
    widths = [lanes >> shift for shift in range(3) if lanes >> shift >= 8]
    for width in widths:
        parts += [ROW.format(lanes=width),
                  CONFIG.format(cache="", distribution=f"[0, {width}, 0]", vector=f"[1, {width}, 0]", reduction=f"[0, 0, {step}]")]
    matchers = ["@match_packed -> @apply_op_config"] + [f"@match_row_{width} -> @apply_op_config" for width in widths]
    if target.arch in MATMUL_TILE:   # after the rows: a one-row product is theirs
        rows, outputs = MATMUL_TILE[target.arch]
        parts += [MATMUL.format(rows=rows, outputs=outputs),
                  CONFIG.format(cache="", distribution=f"[{MATMUL_DISTRIBUTION}, {MATMUL_DISTRIBUTION}, 0]",
                                vector=f"[{rows}, {outputs}, 0]", reduction="[0, 0, 1]")]
        matchers.append("@match_matmul -> @apply_op_config")
    if target.arch in CONV_TILE:
        rows, columns = CONV_TILE[target.arch]
        channels, steps = CONV_DISTRIBUTION
        parts += [BATCH_MATMUL.format(rows=rows, columns=columns),
                  CONFIG.format(distribution=f"[0, {channels}, {steps}, 0]", vector=f"[1, {rows}, {columns}, 0]",
                                cache=f" cache_reduction = [0, 0, 0, {CONV_CACHE_REDUCTION}],", reduction="[0, 0, 0, 1]")]
        matchers.append("@match_conv_matmul -> @apply_op_config")
    parts.append(ENTRY.format(matchers=", ".join(matchers)))
    return "".join(parts)


def spec_flags(target: Target) -> list[str]:
    """The iree-compile flags for this target's spec (and, for ARMv7, arm_math.py's flags, which
    the ARMv7 matmul config relies on); the file's name is its content's digest, so the compile
    cache (keyed by flags) tells specs apart.

    Threading is off with a spec: IREE 3.13 parses the spec under a lock on first use, the
    parse verifies in parallel, and a worker waiting on that verification can pick up another
    dispatch's configuration, which takes the same lock: iree-compile then hangs for good (seen
    in about 1 of 30 compiles). Single-threaded compiles here cost 0-30% more time.
    """
    text = spec_text(target)
    path = cache.cache_root() / "tuning-specs" / f"{cache.digest(text)}.mlir"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(staging, path)
    return [f"--iree-codegen-tuning-spec-path={path}", "--mlir-disable-threading"] + arm_math.flags(target)


def tuning_key_parts(target: Target) -> list[str]:
    """What the tuning tables' cache keys add for ARMv7: the spec and arm_math.py's flags change
    every variant's code there, so counts made without them must not be reused (nothing for
    other targets, whose keys stay as they were)."""
    if target.arch != "armv7":
        return []
    return [spec_text(target), *arm_math.flags(target)]
