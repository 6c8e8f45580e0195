"""Why an export failed, in one line with the model's file and line and a hint for that cause.

Three causes reach the user here, each told apart from the others (a hint about Python control
flow is no help for a float64 model):
- data-dependent control flow (`if x.sum() > 0:`, `.item()` in a condition): torch.export traces
  one path only;
- an exception forward() raises itself (its innermost frame is the user's): about example_input;
- something else torch.export cannot trace (an op with no tracing support, Python it cannot
  follow, an exception in forward()) - the message names the op or construct;
- a dtype bela-iree does not compile: float64 or complex128 anywhere (checked on the exported
  graph, before IREE would fail on it with an unrelated-looking verifier error). Complex64
  outputs are compiled, as real pairs (rewrites/complex_parts.py).
The full traceback goes into the error's detail (the log), never into the headline.
"""
from __future__ import annotations

import re
import traceback
from pathlib import Path

from ..errors import ExportError
from ..modelfile import _line_of, user_frame

CONTROL_FLOW_HINT = ("torch.export traces one path through forward(): replace the Python `if`/`while` on a "
                     "tensor's value by torch.where(condition, a, b) (or torch.cond), and keep .item() out of conditions")
TRACE_HINT = ("torch.export runs forward() with example_input and records tensor ops: keep forward() to torch "
              "operations on tensors (no numpy, printing or Python objects built from tensor values)")
OWN_ERROR_HINT = "forward() raised this itself when run on example_input: check that example_input is what forward() expects"
DTYPE_HINT = "bela-iree compiles float32: keep torch's default dtype (call .float() on the model and example_input)"

_DATA_DEPENDENT = ("GuardOnDataDependentSymNode", "data-dependent", "data dependent", "DataDependentOutputException")
_OP_IN_MESSAGE = re.compile(r"\b(aten\.[\w.]+|aten::\w+)")


def export_error(error: Exception, model_file: Path) -> ExportError:
    """torch.export (or the MLIR import after it) failed: say why, at the user's line."""
    text = "".join(traceback.format_exception(error))
    file, line = user_frame(text, model_file)
    where = {"file": file or str(model_file), "line": line, "detail": text}   # whole: the log shows it all
    message = str(error).strip()
    first = message.splitlines()[0][:200] if message else type(error).__name__
    if any(marker in text for marker in _DATA_DEPENDENT):
        return ExportError("export failed: data-dependent control flow (a Python condition on a tensor's value)",
                           hint=CONTROL_FLOW_HINT, **where)
    frames = traceback.extract_tb(error.__traceback__)
    if frames and Path(frames[-1].filename).resolve().parent == model_file.parent:
        return ExportError(f"forward() raised {type(error).__name__}: {first}", hint=OWN_ERROR_HINT, **where)
    op = _OP_IN_MESSAGE.search(message)
    if op:
        return ExportError(f"export failed: torch.export cannot trace {op.group(1)}: {first}", hint=TRACE_HINT, **where)
    return ExportError(f"export failed: {type(error).__name__}: {first}", hint=TRACE_HINT, **where)


def check_input_dtype(example, model_file: Path) -> None:
    import torch

    if example.dtype != torch.float32:
        raise ExportError(f"example_input is {_name(example.dtype)}; bela-iree compiles float32 models",
                          file=str(model_file), line=_line_of(model_file, "example_input"), hint=DTYPE_HINT)


def check_graph_dtypes(program, model_file: Path) -> None:
    """Raises a dtype ExportError naming the first float64 or complex128 value (its op and line)."""
    import torch

    for node in program.graph.nodes:
        value = node.meta.get("val")
        for tensor in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(tensor, torch.Tensor) and tensor.dtype in (torch.float64, torch.complex128):
                raise _dtype_error(node, tensor.dtype, model_file)


def _dtype_error(node, dtype, model_file: Path) -> ExportError:
    if node.op == "placeholder":   # a weight or buffer: the model was converted (.double())
        return ExportError(f"the model's {node.target if isinstance(node.target, str) else 'weights'} "
                           f"are {_name(dtype)}; bela-iree compiles float32 models", file=str(model_file),
                           line=_line_of(model_file, "model"), hint=DTYPE_HINT)
    file, line = user_frame(node.meta.get("stack_trace"), model_file)
    return ExportError(f"{_op_name(node)} computes in {_name(dtype)}; bela-iree compiles float32 models",
                       file=file or str(model_file), line=line, hint=DTYPE_HINT)


def _op_name(node) -> str:
    return str(node.target) if node.op == "call_function" else node.name


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")

