"""The boards' vmfb on IREE's inline HAL (service/pipeline/inline_hal.py): the stream-phase
rewrite that keeps the packed constants, and a model with weights built and run that way."""
from __future__ import annotations

import numpy as np

from service.bench.run import max_abs_error, run_module
from service.pipeline.inline_hal import INLINE_FLAGS, keep_constants
from service.pipeline.targets import get_target

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
