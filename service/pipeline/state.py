"""State that lives across calls: the buffers a model updates in place in forward().

torch.export keeps an in-place update (`self.h.copy_(h)`) as a mutating op, which the MLIR
importer cannot take. Functionalized (by the run_decompositions of decompose.py), the update
becomes an output the graph signature names a buffer mutation, and iree-turbine's importer
turns each such buffer into a mutable `util.global` the module stores into: the state then
lives in the module's context, from one call to the next, starting from the buffer's value at
export. `reset` (added here, exported beside `main`) stores those starting values back.

A model with no in-place op is left exactly as it was, so its MLIR is unchanged.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ExportError
from ..modelfile import user_frame

RESET_FUNCTION = "reset"
INITIAL_SUFFIX = ".initial"   # the immutable copy of a state global's starting value
REWRITTEN_PREFIX = "graph_module."   # rewrites/core.py's wrapper holds the model as this attribute


def mutating_nodes(program: torch.export.ExportedProgram) -> list[torch.fx.Node]:
    """The graph's in-place ops (copy_, add_, ...), in graph order."""
    return [n for n in program.graph.nodes if n.op == "call_function"
            and isinstance(n.target, torch._ops.OpOverload) and n.target._schema.is_mutable]


def functionalize(program: torch.export.ExportedProgram, model_file: Path,
                  decompose=lambda program: program.run_decompositions({})) -> torch.export.ExportedProgram:
    """decompose(program), which functionalizes it too: its in-place updates become outputs (buffer
    mutations). One pass for both: each run of the graph takes seconds for a recurrent model.
    Raises ExportError, at the model.py line, for an update that cannot become module state."""
    mutating = mutating_nodes(program)
    functional = decompose(program)
    if not mutating:
        return functional
    kinds = torch.export.graph_signature.OutputKind
    for spec in functional.graph_signature.output_specs:
        if spec.kind in (kinds.BUFFER_MUTATION, kinds.USER_OUTPUT, kinds.LOSS_OUTPUT):
            continue
        what = {kinds.USER_INPUT_MUTATION: "changes an input in place",
                kinds.PARAMETER_MUTATION: f"changes the parameter `{spec.target}` in place"}.get(
                    spec.kind, f"updates {spec.target or 'a value'} in a way that is not a buffer ({spec.kind.name})")
        raise _state_error(f"the model {what}; only registered buffers can carry state between calls",
                           _source_line(mutating, spec.target, model_file), model_file,
                           hint="keep state in a buffer (self.register_buffer('h', torch.zeros(...))) and update it "
                                "with self.h.copy_(new_value); work on a copy of the input (x = x.clone())")
    return functional


def state_buffers(program: torch.export.ExportedProgram) -> list[dict]:
    """The buffers the functional program updates: name, shape, dtype and starting values' range."""
    buffers = []
    for target in program.graph_signature.buffers_to_mutate.values():
        value = program.state_dict.get(target, program.constants.get(target))
        name = target.removeprefix(REWRITTEN_PREFIX)   # the user's name, not the rewriter's wrapper's
        buffers.append({"name": name, "shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")})
    return buffers


def add_reset(module_op) -> str | None:
    """Adds `reset()` to the module (its builtin.module operation), storing each mutable global's
    starting value back; its name, or None when the module has no state (left as it is)."""
    from iree.compiler import ir
    from iree.compiler.dialects import func as func_d
    from iree.compiler.dialects import util as util_d

    body = module_op.regions[0].blocks[0]
    states = [op for op in body.operations if op.operation.name == "util.global" and "is_mutable" in op.attributes]
    if not states:
        return None
    with module_op.context, ir.Location.unknown():
        pairs = []
        with ir.InsertionPoint(body):
            for op in states:
                name = ir.StringAttr(op.attributes["sym_name"]).value
                kind = ir.TypeAttr(op.attributes["type"]).value
                util_d.GlobalOp(name + INITIAL_SUFFIX, kind, sym_visibility="private",
                                initial_value=op.attributes["initial_value"])
                pairs.append((name, kind))
            reset = func_d.FuncOp(RESET_FUNCTION, ir.FunctionType.get([], []))
        with ir.InsertionPoint(reset.add_entry_block()):
            for name, kind in pairs:
                initial = util_d.GlobalLoadOp(kind, name + INITIAL_SUFFIX).result
                util_d.GlobalStoreOp(initial, name)
            func_d.ReturnOp([])
    return RESET_FUNCTION


def _source_line(mutating: list[torch.fx.Node], target: str | None, model_file: Path) -> int | None:
    """The model.py line of the in-place op that updates target (the first in-place op if unknown)."""
    named = [n for n in mutating if target and any(getattr(a, "target", None) == target or
                                                   getattr(a, "name", None) == target for a in n.args)]
    for node in named + mutating:
        _, line = user_frame(node.meta.get("stack_trace"), model_file)
        if line:
            return line
    return None


def _state_error(message: str, line: int | None, model_file: Path, hint: str) -> ExportError:
    return ExportError(message, file=str(model_file), line=line, hint=hint)
