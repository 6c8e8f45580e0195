"""TorchScript models: a ScriptModule turned into a module torch.export takes, and a bare
`.jit`/`.pt` file turned into a model file.

torch.export refuses ScriptModules. torch's TorchScript converter (torch._export.converter,
TS2EPConverter) interprets the TorchScript graph node by node into an FX graph; its
ExportedProgram's `.module()` is an ordinary nn.Module that the rest of the pipeline exports
like any other. It converts scripted and traced modules alike (the pybela tutorial's TCN,
exactly); a construct it has no conversion for (a loop whose trip count is a tensor's value,
prim::Loop) becomes an ExportError naming the construct and the line it was scripted from, and
so does an `if` on a tensor's value (converted to torch.cond, which IREE cannot import).

A TorchScript file does not record its input's shape (not even a traced one's, once saved):
it comes from --input-shape, or a sidecar NAME.json beside NAME.jit holding
{"input_shape": [...]} and optionally "block_size" and "sample_rate".
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from .errors import ExportError, UsageError

TORCHSCRIPT_SUFFIXES = (".jit", ".pt")
MATCH_TOLERANCE = 1e-5   # the converted graph against the script, on example_input

# what each TorchScript construct the converter refuses means in the user's source
CONSTRUCTS = {
    "prim::Loop": "a loop whose trip count or condition depends on a tensor's value",
    "prim::If": "an `if` on a value the converter cannot follow",
    "prim::CallMethod": "a call to a method the converter cannot inline",
    "prim::PythonOp": "a Python function called from the script",
}
BRANCH_HINT = ("compute both branches and choose with torch.where(condition, a, b), or give bela-iree the "
               "nn.Module itself in model.py")
CONVERT_HINT = ("bela-iree converts TorchScript with torch's converter, which has no conversion for this: "
                "loop a fixed number of times (or use torch.where instead of a loop on a value), or give "
                "bela-iree the nn.Module itself in model.py")


def convert(script, examples: tuple, model_file: Path, line: int | None = None):
    """The ScriptModule as an nn.Module torch.export can trace (same outputs, checked); errors
    point at `line` (where model.py defines `model`)."""
    import torch
    from torch._export.converter import TS2EPConverter

    try:
        program = TS2EPConverter(script, examples).convert()
    except Exception as e:
        raise _not_convertible(e, script, model_file, line) from None
    if any(node.target is torch.ops.higher_order.cond for node in program.graph.nodes):
        # an `if` on a tensor's value becomes torch.cond, which IREE's importer cannot take
        raise ExportError("the TorchScript model branches on a tensor's value (prim::If, converted to torch.cond, "
                          "which IREE cannot import)" + _scripted_at(script, "prim::If", _on_a_tensor),
                          file=str(model_file), line=line, hint=BRANCH_HINT)
    module = program.module()
    with torch.no_grad():
        wanted, got = script(*examples), module(*examples)
    error = _max_difference(wanted, got)
    if error > MATCH_TOLERANCE:
        raise ExportError(f"the TorchScript model converted with a different result ({error:.3g} apart on "
                          f"example_input)", file=str(model_file), line=line,
                          hint="give bela-iree the nn.Module itself in model.py")
    return module


def _max_difference(wanted, got) -> float:
    import torch
    wanted = wanted if isinstance(wanted, (tuple, list)) else (wanted,)
    got = got if isinstance(got, (tuple, list)) else (got,)
    if len(wanted) != len(got):
        return float("inf")
    return max((float((w - g).abs().max()) if w.numel() else 0.0 for w, g in zip(wanted, got)
                if isinstance(w, torch.Tensor)), default=0.0)


def _not_convertible(error: Exception, script, model_file: Path, line: int | None) -> ExportError:
    """Name the construct (the converter says which node kind) and where it was scripted."""
    import traceback
    text = f"{error}"
    kind = text.rsplit(" ", 1)[-1] if "failed for node" in text else None
    cause = f": {str(error.__cause__).splitlines()[0]}" if error.__cause__ and str(error.__cause__) else ""
    if kind:
        what = CONSTRUCTS.get(kind, "a construct the converter does not support")
        where = _scripted_at(script, kind)
        message = f"the TorchScript model cannot be converted: {kind} ({what}){cause}{where}"
    else:
        message = f"the TorchScript model cannot be converted: {type(error).__name__}: {text.splitlines()[0] if text else ''}"
    return ExportError(message, file=str(model_file), line=line, hint=CONVERT_HINT,
                       detail="".join(traceback.format_exception(error)))


def _on_a_tensor(node) -> bool:
    """A prim::If whose condition is a tensor's value (bool(tensor)), not a constant."""
    return node.inputsAt(0).node().kind() == "aten::Bool"


def _scripted_at(script, kind: str, which=lambda node: True) -> str:
    """` (scripted at FILE:LINE: source)` of the first node of this kind, from its recorded
    source range."""
    import re
    try:
        graph = script.inlined_graph if hasattr(script, "inlined_graph") else script.graph
        for node in _all_nodes(graph):
            if node.kind() == kind and which(node):
                text = str(node.sourceRange())
                found = re.search(r'File "([^"]+)", line (\d+)', text)
                code = [line.strip() for line in text.splitlines()[1:] if line.strip() and "~" not in line]
                return (f" (scripted at {found.group(1)}:{found.group(2)}" if found else " (") + \
                       (f": `{code[1] if len(code) > 1 else code[0]}`)" if code else ")")
    except Exception:   # a description, never a reason to fail differently
        pass
    return ""


def _all_nodes(graph):
    for node in graph.nodes():
        yield node
        for block in node.blocks():
            yield from _all_nodes(block)


# ---- a bare TorchScript file --------------------------------------------------------------

def check_file(path: Path) -> None:
    """A TorchScript archive (a zip holding code/), not a torch.save checkpoint; no torch import."""
    if not path.is_file():
        raise UsageError(f"{path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        raise UsageError(f"{path} is not a TorchScript file (not a zip archive)",
                         hint="save one with torch.jit.script(model).save(path) or torch.jit.trace") from None
    if not any("/code/" in name for name in names):
        raise UsageError(f"{path} holds no TorchScript module (a torch.save checkpoint?)",
                         hint="load a checkpoint in a model.py (`model.load_state_dict(torch.load(...))`), "
                              "or save the model with torch.jit.script(model).save(path)")


def file_spec(path: Path, input_shape: str | None) -> dict:
    """{"shape", "shape_source", "block_size", "sample_rate"} of a TorchScript file."""
    check_file(path)
    sidecar = path.with_suffix(".json")
    spec = {}
    if sidecar.is_file():
        try:
            spec = json.loads(sidecar.read_text())
        except json.JSONDecodeError as e:
            raise UsageError(f"{sidecar}:{e.lineno}: not JSON: {e.msg}") from None
    if input_shape:
        shape, source = _parse_shape(input_shape), "--input-shape"
    elif isinstance(spec, dict) and spec.get("input_shape"):
        shape, source = _parse_shape(",".join(str(d) for d in spec["input_shape"])), sidecar.name
    else:
        raise UsageError(f"{path.name}: bela-iree needs the shape of the model's input, which a TorchScript file "
                         f"does not record", hint=f"give --input-shape (e.g. --input-shape 1,512,2), or write "
                                                  f'{sidecar.name} beside it: {{"input_shape": [1, 512, 2]}}')
    return {"shape": shape, "shape_source": source, "block_size": spec.get("block_size"),
            "sample_rate": spec.get("sample_rate")}


def _parse_shape(text: str) -> list[int]:
    try:
        shape = [int(d) for d in text.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        shape = []
    if not shape or any(d <= 0 for d in shape):
        raise UsageError(f"input shape {text!r} is not a list of positive sizes", hint="e.g. --input-shape 1,512,2")
    return shape


def write_model_file(path: Path, folder: Path, spec: dict) -> Path:
    """Copy the TorchScript file into `folder` and write the model file that loads it beside."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from .layout import MODEL_FILE
    templates = Path(__file__).resolve().parent.parent / "project_templates" / "project"
    env = Environment(loader=FileSystemLoader(templates), undefined=StrictUndefined, keep_trailing_newline=True)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, folder / path.name)
    model_file = folder / MODEL_FILE
    model_file.write_text(env.get_template("torchscript_model.py.j2").render(file_name=path.name, **spec))
    return model_file


def model_file_for(path: Path, input_shape: str | None) -> Path:
    """MODEL given as a TorchScript file: a model file in a scratch folder of the cache named after
    it (so results say its name), loading a copy. The copy's contents key the export cache
    (model_reads.py), so a new file under the same name is a new model."""
    from .pipeline.cache import cache_root, digest
    spec = file_spec(path, input_shape)
    folder = cache_root() / "torchscript" / digest(str(path.resolve()), json.dumps(spec))[:16] / path.stem
    return write_model_file(path, folder, spec)
