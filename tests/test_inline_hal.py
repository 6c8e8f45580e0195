"""The boards' vmfb on IREE's inline HAL (service/pipeline/inline_hal.py): the stream-phase
rewrite that keeps the packed constants, and a model with weights built and run that way."""
from __future__ import annotations

import numpy as np

from service.bench.run import max_abs_error, run_module
from service.pipeline.compile import CompileOptions, compile_model
from service.pipeline.kernel_report import kernel_report
from service.pipeline.inline_hal import INLINE_FLAGS, keep_constants
from service.pipeline.targets import get_target

from .test_instruction_count import starter_at

STREAM_INITIALIZER = """\
  util.initializer {
    %buffer_cst = util.buffer.constant <alignment = 64> : !util.buffer = #util.composite<128xi8, [
    dense_resource<w> : tensor<16x1xf32>,
]>
    %c128 = arith.constant 128 : index
    %did_map, %result = stream.resource.try_map on(#hal.device.affinity<@__device_0>) %buffer_cst[%c0] : !util.buffer -> i1, !stream.resource<constant>{%c128}
    cf.cond_br %did_map, ^bb2(%0, %result : !stream.timepoint, !stream.resource<constant>), ^bb1
  ^bb1:  // pred: ^bb0
    %1 = stream.resource.alloc uninitialized on(#hal.device.affinity<@__device_0>) : !stream.resource<constant>{%c128}
    %file = stream.file.constant on(#hal.device.affinity<@__device_0>) %buffer_cst[%c0 for %c128] : !util.buffer{%c128} -> !stream.file
    %2 = stream.file.read on(#hal.device.affinity<@__device_0>) await(%0) => %file[%c0_i64], %1[%c0], %c128 : !stream.file -> !stream.resource<constant>{%c128} => !stream.timepoint
    cf.br ^bb2(%2, %1 : !stream.timepoint, !stream.resource<constant>)
  ^bb2(%3: !stream.timepoint, %4: !stream.resource<constant>):  // 2 preds: ^bb0, ^bb1
    util.global.store %4, @__constant : !stream.resource<constant>
    util.return
  }
"""


def test_each_constant_initializer_takes_the_mapped_buffer_behind_a_barrier():
    text, kept = keep_constants(STREAM_INITIALIZER)
    assert kept == 1
    assert "stream.file.read" not in text and "^bb1:" not in text
    assert "cf.br ^bb2(%0, %result : !stream.timepoint, !stream.resource<constant>)" in text
    assert "%buffer_cst_kept = util.optimization_barrier %buffer_cst : !util.buffer" in text
    assert "try_map on(#hal.device.affinity<@__device_0>) %buffer_cst_kept[%c0]" in text
    assert keep_constants("module {}") == ("module {}", 0)


def test_a_model_with_weights_runs_on_the_inline_hal_and_matches_pytorch(compiled):
    """basic_mlp's weights are packed constants: the ones IREE 3.13's inline conversion drops."""
    result = compiled("basic_mlp", "gem")
    assert all(flag in result.flags for flag in INLINE_FLAGS)
    output = run_module(result.folder, get_target("gem"))
    assert np.isfinite(output).all()
    assert max_abs_error(output, result.folder) < 1e-4


def test_bela_preprocessing_runs_before_the_inline_pipeline(tmp_path):
    """IREE's inline pipeline skips --iree-hal-preprocess-executables-with: iree-opt runs each
    step (a pass pipeline, or a command) after device assignment and configuration."""
    from service.pipeline.inline_hal import CONFIGURED, preprocess_argv
    stream = tmp_path / "stream.mlir"
    flags = ["--iree-hal-target-device=local", "--iree-llvmcpu-target-triple=armv7a-pc-linux-gnueabihf",
             "--iree-hal-preprocess-executables-with=builtin.module(iree-codegen-math-transform)",
             "--iree-hal-preprocess-executables-with=sh rewrite.sh", "--iree-opt-level=O3"]
    argv = preprocess_argv("iree-opt", flags, stream)
    assert argv[:4] == ["iree-opt", str(stream), "--iree-hal-target-device=local",
                        "--iree-llvmcpu-target-triple=armv7a-pc-linux-gnueabihf"]
    pipeline = argv[4]
    assert pipeline.startswith("--pass-pipeline=builtin.module(iree-hal-device-assignment-pipeline,"
                               "iree-hal-configuration-pipeline,")
    assert 'iree-hal-preprocess-executables-with-pipeline{pipeline="builtin.module(iree-codegen-math-transform)"}' in pipeline
    assert 'iree-hal-preprocess-executables-with-tool{command="sh rewrite.sh"}' in pipeline
    assert argv[-2:] == ["-o", str(tmp_path / CONFIGURED)]
    assert preprocess_argv("iree-opt", flags[:2], stream) is None    # gem, bbai64: nothing to run


def test_bela_builds_keep_neon_math_on_the_inline_hal(tmp_path):
    """The starter's tanh on Bela: no fmaf call per lane in the inline build's kernels."""
    result = compile_model(starter_at(tmp_path / "m", 16), CompileOptions(get_target("bela"), variant="default"),
                           tmp_path / "out")
    assert INLINE_FLAGS[-1] in result.flags
    report = kernel_report(result.artifacts[0])
    assert report and not any("fmaf" in d["calls"] for d in report)
    assert sum(d["neon"] for d in report) > sum(d["vfp"] for d in report)
