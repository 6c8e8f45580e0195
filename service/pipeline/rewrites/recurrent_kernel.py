"""A whole recurrent layer (one direction, every time step) as ONE IREE dispatch.

Unrolled, each step of an nn.LSTM/GRU/RNN is two dispatches (h @ W_hh, then the gates), and a
dispatch costs far more than a small step's arithmetic (lstm_amp: ~18 k instructions of runtime
per dispatch on the Bela's Cortex-A8, for ~2.3 k multiply-adds a step). Here the time loop runs
inside one kernel that we write in MLIR ourselves: a `stream.executable` whose function loops
over batch and time with scf.for on vectors (the state is carried as vectors; h @ W_hh is a loop
over the hidden units adding h[k] times W_hh's row k, CHUNK outputs at a time; tanh and sigmoid
from multiply-adds), called with `flow.dispatch`. IREE's llvm-cpu codegen compiles it for any
target, and it is an ordinary dispatch for the VM, so EmitC takes it too. It reaches the graph
as an iree-turbine CustomOp whose MLIR is this module's text; PyTorch (while tracing, and
eagerly) runs the same cells in a Python loop.

Only for float32 layers with at most MAX_HIDDEN units: each step's gates are whole vectors of
G*H floats (256 at 64 LSTM units), and a wider layer is better served by IREE's own matmuls.
"""
from __future__ import annotations

import math

import torch
from iree.turbine.runtime.op_reg import CustomOp, KernelBuilder, KernelSelection, def_library, impl_helper

from .recurrent_cells import CELLS

MAX_HIDDEN = 64
# outputs of h @ W_hh accumulated together: 8 NEON registers on the Cortex-A8 (of 16), 2 AVX-512
CHUNK = 32
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}

_LIBRARY = def_library("bela_recurrence")


def _bindings_compat():
    """iree-turbine 3.9 expands custom ops with `IntegerType.isinstance(t)` and the like, which the
    MLIR Python bindings of iree-base-compiler 3.13 no longer have (types and values come back
    downcast, so Python's isinstance answers): give those classes the method while it is missing."""
    from iree.compiler import ir
    for name in ("IntegerType", "IndexType", "F16Type", "F32Type", "F64Type", "RankedTensorType", "ShapedType",
                 "MemRefType", "VectorType", "OpResult", "BlockArgument"):
        cls = getattr(ir, name)
        if not hasattr(cls, "isinstance"):
            cls.isinstance = staticmethod(lambda value, cls=cls: isinstance(value, cls))


_bindings_compat()


def fits(cell: str, xw: torch.Tensor, hidden: int) -> bool:
    """Can this layer be one dispatch?"""
    return cell in GATES and xw.dtype == torch.float32 and 0 < hidden <= MAX_HIDDEN


def reference(cell: str, reverse: bool, xw, w_hh_t, b_hh, state):
    """The layer in PyTorch, for eager runs: what the kernel computes, step by step."""
    step = CELLS[cell]
    outputs = [None] * xw.shape[0]
    for t in (reversed(range(xw.shape[0])) if reverse else range(xw.shape[0])):
        state = step(xw[t], state, w_hh_t, b_hh)
        outputs[t] = state[0]
    return (torch.stack(outputs), *state)


def kernel_name(cell: str, reverse: bool, steps: int, batch: int, hidden: int) -> str:
    return f"recurrent_{cell}_{steps}x{batch}x{hidden}" + ("_reverse" if reverse else "") + "_f32"


class _Text:
    """Lines of MLIR, with the vector types of this layer."""

    def __init__(self, hidden: int, gates: int):
        self.lines: list[str] = []
        self.vh, self.vg = f"vector<{hidden}xf32>", f"vector<{gates * hidden}xf32>"
        self.count = 0

    def __call__(self, line: str):
        self.lines.append(line)

    def op(self, text: str) -> str:
        """Emits `%vN = text` and returns %vN."""
        self.count += 1
        name = f"%v{self.count}"
        self.lines.append(f"        {name} = {text}")
        return name

    def sigmoid(self, x: str) -> str:
        """0.5 + 0.5 tanh(x / 2)."""
        half_x = self.op(f"arith.mulf {x}, %half : {self.vh}")
        return self.op(f"arith.addf {self.op(f'arith.mulf {self.tanh(half_x)}, %half : {self.vh}')}, %half : {self.vh}")

    def tanh(self, x: str) -> str:
        """tanh(x) = sign(x) (1 - 2 / (e^2|x| + 1)), with e^2|x| = 2^n e^r (n the nearest integer to
        2|x| log2(e), |r| <= ln(2)/2, e^r by its Taylor series to r^7: relative error < 1e-8).
        Our own, not math.tanh: IREE's approximations use math.fma, which the Cortex-A8 (NEON
        without fused multiply-add) turns into a call of fmaf per element: 9 calls per tanh."""
        vh, vi = self.vh, self.vh.replace("f32", "i32")
        ax = self.op(f"arith.minimumf {self.op(f'math.absf {x} : {vh}')}, %tanh_max : {vh}")
        y = self.op(f"arith.mulf {ax}, %two_log2e : {vh}")           # 2|x| / ln 2 >= 0
        n = self.op(f"arith.fptosi {self.op(f'arith.addf {y}, %half : {vh}')} : {vh} to {vi}")
        n_float = self.op(f"arith.sitofp {n} : {vi} to {vh}")
        r = self.op(f"arith.mulf {self.op(f'arith.subf {y}, {n_float} : {vh}')}, %ln2 : {vh}")
        # e^r = sum of r^k / k!, k <= 7, by pairs (Estrin): 6 dependent steps instead of Horner's 14
        r2 = self.op(f"arith.mulf {r}, {r} : {vh}")
        r4 = self.op(f"arith.mulf {r2}, {r2} : {vh}")
        pairs = [self.op(f"arith.addf {self.op(f'arith.mulf {r}, %inv_fact{k + 1} : {vh}')}, %inv_fact{k} : {vh}")
                 for k in (0, 2, 4, 6)]
        low = self.op(f"arith.addf {self.op(f'arith.mulf {r2}, {pairs[1]} : {vh}')}, {pairs[0]} : {vh}")
        high = self.op(f"arith.addf {self.op(f'arith.mulf {r2}, {pairs[3]} : {vh}')}, {pairs[2]} : {vh}")
        p = self.op(f"arith.addf {self.op(f'arith.mulf {r4}, {high} : {vh}')}, {low} : {vh}")
        exponent = self.op(f"arith.shli {self.op(f'arith.addi {n}, %bias127 : {vi}')}, %c23v : {vi}")
        scale = self.op(f"arith.bitcast {exponent} : {vi} to {vh}")   # 2^n, built in the exponent bits
        e = self.op(f"arith.mulf {p}, {scale} : {vh}")
        ratio = self.op(f"arith.divf %two, {self.op(f'arith.addf {e}, %one : {vh}')} : {vh}")
        return self.op(f"math.copysign {self.op(f'arith.subf %one, {ratio} : {vh}')}, {x} : {vh}")

    def binary(self, op: str, a: str, b: str) -> str:
        return self.op(f"arith.{op} {a}, {b} : {self.vh}")

    def part(self, vector: str, index: int, hidden: int) -> str:
        return self.op(f"vector.extract_strided_slice {vector} offsets = [{index * hidden}], sizes = [{hidden}], "
                       f"strides = [1] : {self.vg} to {self.vh}")


def _step(text: _Text, cell: str, x: str, hh: str, h: str, c: str | None, hidden: int) -> tuple[str, str | None]:
    """One step's gates from x (the step's input projection) and hh (h @ W_hh + b_hh), as
    PyTorch's cells compute them; returns the new h (and c)."""
    vg = text.vg
    if cell.startswith("rnn"):
        gates = text.op(f"arith.addf {x}, {hh} : {vg}")
        if cell == "rnn_tanh":
            return text.tanh(gates), None
        return text.binary("maximumf", gates, "%zero_h"), None
    if cell == "lstm":
        gates = text.op(f"arith.addf {x}, {hh} : {vg}")
        i, f, g, o = (text.part(gates, k, hidden) for k in range(4))
        c_new = text.binary("addf", text.binary("mulf", text.sigmoid(f), c),
                            text.binary("mulf", text.sigmoid(i), text.tanh(g)))
        return text.binary("mulf", text.sigmoid(o), text.tanh(c_new)), c_new
    xr, xz, xn = (text.part(x, k, hidden) for k in range(3))
    hr, hz, hn = (text.part(hh, k, hidden) for k in range(3))
    r, z = text.sigmoid(text.binary("addf", xr, hr)), text.sigmoid(text.binary("addf", xz, hz))
    n = text.tanh(text.binary("addf", xn, text.binary("mulf", r, hn)))
    # (1 - z) * n + z * h
    return text.binary("addf", text.binary("mulf", text.binary("subf", "%one", z), n), text.binary("mulf", z, h)), None


def _pieces(size: int) -> list[tuple[int, int]]:
    """(offset, width) of CHUNK-wide parts of a row, the last one split into powers of two: a
    vector of 24 floats is loaded one float at a time on x86 (it cannot be widened to 32 there)."""
    pieces, offset = [], 0
    while offset < size:
        width = min(CHUNK, 1 << ((size - offset).bit_length() - 1))
        pieces.append((offset, width))
        offset += width
    return pieces


def _load(text: _Text, memref: str, index: str, memref_type: str, size: int, zero: str) -> str:
    """The text of an op giving vector<size> from memref[index..., 0:size], loaded in _pieces
    into `zero` (a vector<size> of zeros)."""
    whole = f"vector<{size}xf32>"
    if len(_pieces(size)) == 1:
        return f"vector.load {memref}[{index}%c0] : {memref_type}, {whole}"
    value = zero
    for offset, width in _pieces(size)[:-1]:
        part = text.op(f"vector.load {memref}[{index}%c{offset}] : {memref_type}, vector<{width}xf32>")
        value = text.op(f"vector.insert_strided_slice {part}, {value} offsets = [{offset}], strides = [1] "
                        f": vector<{width}xf32> into {whole}")
    offset, width = _pieces(size)[-1]
    part = text.op(f"vector.load {memref}[{index}%c{offset}] : {memref_type}, vector<{width}xf32>")
    return (f"vector.insert_strided_slice {part}, {value} offsets = [{offset}], strides = [1] "
            f": vector<{width}xf32> into {whole}")


def _store(text: _Text, value: str, memref: str, index: str, memref_type: str, size: int) -> None:
    """memref[index..., 0:size] = value (a vector<size>), stored in _pieces."""
    for offset, width in _pieces(size):
        part = value
        if width != size:
            part = text.op(f"vector.extract_strided_slice {value} offsets = [{offset}], sizes = [{width}], "
                           f"strides = [1] : vector<{size}xf32> to vector<{width}xf32>")
        text(f"        vector.store {part}, {memref}[{index}%c{offset}] : {memref_type}, vector<{width}xf32>")


def kernel_mlir(cell: str, reverse: bool, steps: int, batch: int, hidden: int) -> str:
    """The module the CustomOp merges into the exported program: the executable and the
    util.func that dispatches it. Arguments: xw (steps, batch, G*H) = every step's input
    projection, w_hh_t (H, G*H), b_hh (G*H), h0 (batch, H) [, c0]; results: the output
    sequence (steps, batch, H), the final h [, c]."""
    gates = GATES[cell]
    g = gates * hidden
    lstm = cell == "lstm"
    name = kernel_name(cell, reverse, steps, batch, hidden)
    text = _Text(hidden, gates)
    vh, vg = text.vh, text.vg
    m_x, m_w, m_b = f"memref<{steps}x{batch}x{g}xf32>", f"memref<{hidden}x{g}xf32>", f"memref<{g}xf32>"
    m_s, m_o = f"memref<{batch}x{hidden}xf32>", f"memref<{steps}x{batch}x{hidden}xf32>"
    t_x, t_w, t_b = (m.replace("memref", "tensor") for m in (m_x, m_w, m_b))
    t_s, t_o = m_s.replace("memref", "tensor"), m_o.replace("memref", "tensor")
    states = ["h0", "c0"] if lstm else ["h0"]
    results = ["out", "hn", "cn"] if lstm else ["out", "hn"]
    bindings = ["x", "w", "b"] + states + results
    types = {"x": m_x, "w": m_w, "b": m_b, "h0": m_s, "c0": m_s, "out": m_o, "hn": m_s, "cn": m_s}

    text("module {")
    text(f"stream.executable private @{name}_exe {{")
    # "layer$dispatch_...": bench names a dispatch by what follows its "$", the kernel report reads "dispatch" symbols
    text(f"  stream.executable.export public @\"layer$dispatch_{name}\" workgroups() -> (index, index, index) {{")
    text("    %c1 = arith.constant 1 : index")
    text("    stream.return %c1, %c1, %c1 : index, index, index")
    text("  }")
    text("  builtin.module {")
    text(f"    func.func @\"layer$dispatch_{name}\"({', '.join(f'%b_{b}: !stream.binding' for b in bindings)}) {{")
    text("      %c0 = arith.constant 0 : index")
    text("      %c1 = arith.constant 1 : index")
    text(f"      %steps = arith.constant {steps} : index")
    text(f"      %last = arith.constant {steps - 1} : index")
    text(f"      %batch = arith.constant {batch} : index")
    text(f"      %one = arith.constant dense<1.0> : {vh}")
    text(f"      %half = arith.constant dense<0.5> : {vh}")
    text(f"      %two = arith.constant dense<2.0> : {vh}")
    text(f"      %tanh_max = arith.constant dense<10.0> : {vh}")        # tanh(10) = 1 in float32
    text(f"      %two_log2e = arith.constant dense<{2 / math.log(2)!r}> : {vh}")
    text(f"      %ln2 = arith.constant dense<{math.log(2)!r}> : {vh}")
    for k in range(8):
        text(f"      %inv_fact{k} = arith.constant dense<{1 / math.factorial(k)!r}> : {vh}")
    vi = vh.replace("f32", "i32")
    text(f"      %bias127 = arith.constant dense<127> : {vi}")
    text(f"      %c23v = arith.constant dense<23> : {vi}")
    text(f"      %zero_h = arith.constant dense<0.0> : {vh}")
    text(f"      %hidden = arith.constant {hidden} : index")
    for offset in sorted({o for o, _ in _pieces(g) + _pieces(hidden)} - {0}):
        text(f"      %c{offset} = arith.constant {offset} : index")
    text(f"      %zero_g = arith.constant dense<0.0> : {vg}")
    text(f"      %h_scratch = memref.alloca() : memref<{hidden}xf32>")
    for b in bindings:
        text(f"      %m_{b} = stream.binding.subspan %b_{b}[%c0] : !stream.binding -> {types[b]}")
    text(f"      %bias = {_load(text, '%m_b', '', m_b, g, '%zero_g')}")
    text("      scf.for %n = %c0 to %batch step %c1 {")
    carried = ["%h", "%c"] if lstm else ["%h"]
    for s, st in zip(carried, states):
        text(f"        {s}_init = {_load(text, f'%m_{st}', '%n, ', m_s, hidden, '%zero_h')}")
    iter_args = ", ".join(f"{s} = {s}_init" for s in carried)
    text(f"        %final:{len(carried)} = scf.for %i = %c0 to %steps step %c1 iter_args({iter_args}) "
         f"-> ({', '.join([vh] * len(carried))}) {{")
    t = text.op("arith.subi %last, %i : index") if reverse else "%i"
    x = text.op(_load(text, "%m_x", f"{t}, %n, ", m_x, g, "%zero_g"))
    # h @ W_hh + b_hh, CHUNK outputs at a time: a loop over the hidden units adds h[k] times that
    # part of W_hh's row k (W_hh read in the loop, where unrolled LLVM copied it all to the stack)
    _store(text, "%h", "%h_scratch", "", f"memref<{hidden}xf32>", hidden)
    acc = "%zero_g"
    for offset, width in _pieces(g):
        vc = f"vector<{width}xf32>"
        bias = text.op(f"vector.extract_strided_slice %bias offsets = [{offset}], sizes = [{width}], strides = [1] "
                       f": {vg} to {vc}")
        part = text.op(f"scf.for %k = %c0 to %hidden step %c1 iter_args(%a = {bias}) -> ({vc}) {{")
        h_k = text.op(f"memref.load %h_scratch[%k] : memref<{hidden}xf32>")
        row = text.op(f"vector.load %m_w[%k, %c{offset}] : {m_w}, {vc}")
        product = text.op(f"arith.mulf {text.op(f'vector.broadcast {h_k} : f32 to {vc}')}, {row} : {vc}")
        text(f"          scf.yield {text.op(f'arith.addf {product}, %a : {vc}')} : {vc}")
        text("        }")
        acc = text.op(f"vector.insert_strided_slice {part}, {acc} offsets = [{offset}], strides = [1] : {vc} into {vg}")
    h_new, c_new = _step(text, cell, x, acc, "%h", "%c" if lstm else None, hidden)
    _store(text, h_new, "%m_out", f"{t}, %n, ", m_o, hidden)
    yielded = [h_new, c_new] if lstm else [h_new]
    text(f"        scf.yield {', '.join(yielded)} : {', '.join([vh] * len(yielded))}")
    text("        }")
    for k, r in enumerate(results[1:]):
        _store(text, f"%final#{k}", f"%m_{r}", "%n, ", m_s, hidden)
    text("      }")
    text("      return")
    text("    }")
    text("  }")
    text("}")
    arg_types = [t_x, t_w, t_b] + [t_s] * len(states)
    result_types = [t_o] + [t_s] * (len(results) - 1)
    args = ", ".join(f"%a{i}: {ty}" for i, ty in enumerate(arg_types))
    text(f"util.func private @{name}({args}) -> ({', '.join(result_types)}) {{")
    text(f"  %r:{len(result_types)} = flow.dispatch @{name}_exe::@\"layer$dispatch_{name}\""
         f"({', '.join(f'%a{i}' for i in range(len(arg_types)))}) : ({', '.join(arg_types)}) -> ({', '.join(result_types)})")
    text(f"  util.return {', '.join(f'%r#{i}' for i in range(len(result_types)))} : {', '.join(result_types)}")
    text("}")
    text("}")
    return "\n".join(text.lines)


class _Loader(impl_helper.TemplateLoader):
    def load_template(self, kb: KernelBuilder, name: str, **kwargs) -> object:
        return self._parse_module_asm(kb, kernel_mlir(**kwargs))


_LOADER = _Loader()


def _select(ksel: KernelSelection, n_state: int):
    tensors = [ksel.arg_tensor(i) for i in range(2, 5 + n_state)]
    for tensor in tensors:
        tensor.specialize_all_dims()
    xw, h0 = tensors[0], tensors[3]
    ksel.attr_str(0)
    ksel.attr_int(1)
    steps, batch, hidden = xw.t.shape[0], xw.t.shape[1], h0.t.shape[-1]
    ksel.return_new_tensor([steps, batch, hidden], xw.t.dtype).specialize_all_dims()
    for _ in range(n_state):
        ksel.return_new_tensor([batch, hidden], xw.t.dtype).specialize_all_dims()


def _generate(ksel: KernelSelection, kb: KernelBuilder):
    cell, reverse = ksel.arg_descs[0].v, bool(ksel.arg_descs[1].v)
    xw, h0 = ksel.arg_descs[2].t, ksel.arg_descs[5].t
    shape = dict(steps=xw.shape[0], batch=xw.shape[1], hidden=h0.shape[-1])
    function = _LOADER.inline_template_function(kb, "recurrence", kernel_name(cell, reverse, **shape),
                                                cell=cell, reverse=reverse, **shape)
    kb.yield_results(*impl_helper.call_function(function, *kb.arg_bindings[2:]))


@CustomOp.register(library=_LIBRARY)
class layer_h(CustomOp):
    """An RNN or GRU layer, one direction: (output sequence, final h)."""
    signature = "layer_h(str cell, int reverse, Tensor xw, Tensor w_hh_t, Tensor b_hh, Tensor h0) -> (Tensor, Tensor)"

    def select(self, ksel: KernelSelection):
        _select(ksel, 1)

    def eager_execute(self, cell, reverse, xw, w_hh_t, b_hh, h0):
        return reference(cell, bool(reverse), xw, w_hh_t, b_hh, (h0,))

    def generate(self, ksel: KernelSelection, kb: KernelBuilder):
        _generate(ksel, kb)


@CustomOp.register(library=_LIBRARY)
class layer_hc(CustomOp):
    """An LSTM layer, one direction: (output sequence, final h, final c)."""
    signature = ("layer_hc(str cell, int reverse, Tensor xw, Tensor w_hh_t, Tensor b_hh, Tensor h0, Tensor c0) "
                 "-> (Tensor, Tensor, Tensor)")

    def select(self, ksel: KernelSelection):
        _select(ksel, 2)

    def eager_execute(self, cell, reverse, xw, w_hh_t, b_hh, h0, c0):
        return reference(cell, bool(reverse), xw, w_hh_t, b_hh, (h0, c0))

    def generate(self, ksel: KernelSelection, kb: KernelBuilder):
        _generate(ksel, kb)


def run(cell: str, reverse: bool, xw, w_hh_t, b_hh, state: tuple):
    """The layer as one dispatch: (output sequence, *final state)."""
    if cell == "lstm":
        return layer_hc(cell, int(reverse), xw, w_hh_t, b_hh, *state)
    return layer_h(cell, int(reverse), xw, w_hh_t, b_hh, *state)
