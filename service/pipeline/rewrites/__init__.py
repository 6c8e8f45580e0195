"""Exact rewrites of ops IREE cannot take as written (or runs slowly), applied to the exported graph.

The user's model stays as written: after torch.export, core.py re-runs the graph, handing each
call to the first rule of RULES that takes it, and exports it again. Each rule is one object
(core.Rule: needs, prepare, lay_out, matches, replace) in its family's module, which says why it
exists: recurrent.py (time loops), convolution.py (im2col, Winograd, conv + pool), linear.py
(packed one-row Linears, folded chains), fft.py (four-step DFT, normalised rfft, complex abs, every
other FFT as DFT matmuls), complex_parts.py (complex outputs as real pairs, conj, add and scaling),
simple.py (dropout, detach_, attention, random draws as inputs), resample.py (interpolation as
gathers), scans.py (compensated cumsum/cumprod, cummax), elementwise.py (log10, tan, fmax...),
pooling.py (ceil-mode max pooling), reductions.py (distances, medians, mode, histc),
linalg.py (factorizations, solves, SVD and eigenvalues
written out for the matrix size), special.py (gamma, erf, Bessel, zeta, orthogonal polynomials
as float32 approximations). Each rewrite is exact math (Winograd, the interpolation weights,
the scans and the factorizations up to rounding; Jacobi sweeps and the matrix exponential's series
converged to it; special.py's to float32's accuracy); tests/rewrites/ compares each with PyTorch,
in PyTorch and after IREE.

Adding a rewrite: a rule in its family's RULES (or a new module, listed below), and its test.
"""
from __future__ import annotations

import torch

from . import (complex_parts, convolution, core, elementwise, fft, linalg, linear, pooling, recurrent, reductions,
               resample, scans, simple, special)
from .convolution import WINOGRAD_MIN_CHANNELS
from .core import OpRule, Rule
from .fft import dft_matrices
from .linear import LINEAR_FOLD, ROW_LAYOUT_OPS, folded_linear, linear_fold_source, pack_one_row_weight
from .recurrent import RECURRENT_OPS, UNROLL_MAX_STEPS
from .simple import RANDOM_OPS, NoiseInput, draw_noise, noise_inputs

# The rules, in priority order: within a family the order matters (a fused or faster form before
# the general one; FoldLinears stores before OneRowLinear); the families take disjoint ops.
RULES: list[Rule] = [*convolution.RULES, *linear.RULES, *fft.RULES, *complex_parts.RULES, *simple.RULES,
                    *recurrent.RULES, *resample.RULES, *scans.RULES, *elementwise.RULES, *pooling.RULES,
                    *linalg.RULES, *special.RULES, *reductions.RULES]


def needs_rewrite(program: torch.export.ExportedProgram) -> bool:
    return core.needs_rewrite(program, RULES)


def apply(program: torch.export.ExportedProgram, example: torch.Tensor | tuple, unroll_loops: bool = False):
    """Returns (program, applied rewrite names, noise inputs). A no-op for most models.
    unroll_loops: unroll recurrent layers' time loops (EmitC cannot express a loop)."""
    return core.apply(program, example, RULES, unroll_loops)


__all__ = ["RULES", "Rule", "OpRule", "apply", "needs_rewrite", "NoiseInput", "noise_inputs", "draw_noise",
           "RANDOM_OPS", "RECURRENT_OPS", "UNROLL_MAX_STEPS", "WINOGRAD_MIN_CHANNELS", "LINEAR_FOLD",
           "ROW_LAYOUT_OPS", "dft_matrices", "folded_linear", "linear_fold_source", "pack_one_row_weight"]
