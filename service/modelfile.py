"""Loading a model file (a project's model.py, or a zoo model) by its contract.

A model file defines `model` (an nn.Module, or a zero-argument function returning one) and
`example_input` (a tensor or a tuple of tensors, or a function returning one); optionally
`BLOCK_SIZE`, `SAMPLE_RATE`, and with several inputs or outputs `INPUTS` / `OUTPUTS` (where each
comes from and goes to: project.py's routing). `model` may be a TorchScript ScriptModule
(torchscript.py converts it). The files the model file reads while it loads are recorded
(model_reads.py). Every way that can go wrong becomes a ModelFileError with the file and line.
"""
from __future__ import annotations

import importlib.util
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BelaIreeError, ModelFileError, UsageError

if TYPE_CHECKING:
    import torch

DEFAULT_SAMPLE_RATE = 44100


@dataclass
class LoadedModel:
    path: Path
    module: "torch.nn.Module"
    example_input: "torch.Tensor"            # the first input (the block, for most models)
    block_size: int
    sample_rate: int
    example_inputs: tuple = ()               # every input, in call order (example_input first)
    namespace: dict | None = None            # what the model file defines (INPUTS, OUTPUTS...)
    reads: list = field(default_factory=list)   # files read while loading: [{"path", "sha256"}]
    parameters: int = 0                      # counted before a TorchScript conversion (which makes them buffers)

    def __post_init__(self):
        self.example_inputs = self.example_inputs or (self.example_input,)


def resolve_model(ref: str, input_shape: str | None = None, block_size: int | None = None) -> Path:
    """MODEL on the command line: a zoo name, a path to a model file, a project directory, a
    TorchScript file (its model file is written beside a copy: torchscript.py; `input_shape`:
    --input-shape), or a Neural Amp Modeler capture (`.nam`: a model.py that loads it, written to
    the cache, its block `block_size` frames)."""
    path = Path(ref)
    from .torchscript import TORCHSCRIPT_SUFFIXES, model_file_for
    if path.suffix in TORCHSCRIPT_SUFFIXES:
        return model_file_for(path, input_shape)
    if path.suffix == ".nam":
        if not path.is_file():
            raise UsageError(f"{path} does not exist")
        from .nam.model_file import cached_model_file
        from .pipeline.cache import cache_root
        return cached_model_file(path, block_size, cache_root())
    if path.is_dir():
        if not (path / "model.py").exists():
            raise UsageError(f"{path} has no model.py",
                             hint="give a project directory, a model file, a .nam capture or a zoo name")
        return (path / "model.py").resolve()
    if path.suffix == ".py":
        if not path.exists():
            raise UsageError(f"{path} does not exist")
        return path.resolve()
    from zoo import model_path, names
    if ref in names():
        return model_path(ref)
    raise UsageError(f"unknown model {ref!r}", hint=f"use a path to a model.py, a .nam capture or one of: {', '.join(names())}")


def model_name(path: Path) -> str:
    """A zoo model is called by its name; a project's model.py by its project folder."""
    return path.parent.name if path.name == "model.py" else path.stem


def load_model(path: Path) -> LoadedModel:
    from .model_reads import recording

    with recording(path) as recorder:
        try:
            loaded = _load(path)
        except BelaIreeError as e:
            raise _with_reads(e, recorder.reads(), path) from None
    loaded.reads = recorder.reads()
    return loaded


def _with_reads(error: BelaIreeError, reads: list[dict], path: Path) -> BelaIreeError:
    """A load that failed after reading data files: they may be missing or half-written."""
    error.reads = reads
    if reads and not error.hint:
        names = ", ".join(r["path"] + ("" if r["sha256"] else " (missing)") for r in reads)
        error.hint = (f"{path.name} read {names} while loading (deleted, or still being written? "
                      f"saving it whole rebuilds)")
    return error


def _load(path: Path) -> LoadedModel:
    import torch

    namespace = _execute(path)
    module = _call_if_function(namespace, "model", path)
    if not isinstance(module, torch.nn.Module):
        raise ModelFileError(f"`model` must be an nn.Module or a function returning one, not {type(module).__name__}",
                             file=str(path), line=_line_of(path, "model"))
    examples = _call_if_function(namespace, "example_input", path)
    examples = tuple(examples) if isinstance(examples, (tuple, list)) else (examples,)
    if not examples or not all(isinstance(e, torch.Tensor) for e in examples):
        kinds = ", ".join(type(e).__name__ for e in examples) or "an empty tuple"
        raise ModelFileError(f"`example_input` must be a tensor, a tuple of tensors or a function returning one, "
                             f"not {kinds}", file=str(path), line=_line_of(path, "example_input"))
    examples = tuple(e.detach().contiguous() for e in examples)
    parameters = sum(p.numel() for p in module.parameters())
    if isinstance(module, torch.jit.ScriptModule):   # torch.export refuses these: convert first
        from .torchscript import convert
        module = convert(module.eval(), examples, path, _line_of(path, "model"))   # (the converted module has no .eval())
    else:
        module = module.eval()
    example = examples[0]
    block_size = int(namespace.get("BLOCK_SIZE", example.shape[-1] if example.dim() else 1))
    sample_rate = int(namespace.get("SAMPLE_RATE", DEFAULT_SAMPLE_RATE))
    return LoadedModel(path, module, example, block_size, sample_rate, examples, namespace,
                       parameters=parameters)


def _execute(path: Path) -> dict:
    spec = importlib.util.spec_from_file_location(f"bela_iree_user_model_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # a model may import its neighbours
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ModelFileError(f"syntax error: {e.msg}", file=e.filename or str(path), line=e.lineno,
                             detail=traceback.format_exc()) from None
    except ModelFileError:
        raise      # already names its file and line (a capture the model file loads, service/nam)
    except Exception as e:
        raise _error_at_user_line(e, path, "error while importing the model file") from None
    finally:
        sys.path.remove(str(path.parent))
    return vars(module)


def _call_if_function(namespace: dict, name: str, path: Path):
    if name not in namespace:
        raise ModelFileError(f"the model file defines no `{name}`", file=str(path),
                             hint="define `model` (an nn.Module or a function returning one) and `example_input`")
    value = namespace[name]
    if callable(value) and not _is_module_or_tensor(value):
        import torch
        try:
            with torch.random.fork_rng():  # seeding inside the model file must not leak out
                return value()
        except Exception as e:
            raise _error_at_user_line(e, path, f"error in {name}()") from None
    return value


def _is_module_or_tensor(value) -> bool:
    import torch
    return isinstance(value, (torch.nn.Module, torch.Tensor))


def _error_at_user_line(error: BaseException, path: Path, context: str) -> ModelFileError:
    """Point at the deepest frame inside the user's project, not at torch internals."""
    frames = traceback.extract_tb(error.__traceback__)
    user = [f for f in frames if Path(f.filename).resolve().parent == path.parent]
    frame = user[-1] if user else None
    return ModelFileError(f"{context}: {type(error).__name__}: {error}",
                          file=frame.filename if frame else str(path), line=frame.lineno if frame else None,
                          detail="".join(traceback.format_exception(error)))


def user_frame(stack_trace: str | None, path: Path, most_recent_first: bool = False) -> tuple[str | None, int | None]:
    """The innermost line of the user's project in a stack trace (Python traceback order, or
    faulthandler's most-recent-first order)."""
    if not stack_trace:
        return None, None
    found = [(m.group(1), int(m.group(2))) for m in re.finditer(r'File "([^"]+)", line (\d+)', stack_trace)
             if Path(m.group(1)).resolve().parent == path.parent]
    if not found:
        return None, None
    return found[0] if most_recent_first else found[-1]


def _line_of(path: Path, name: str) -> int | None:
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if text.startswith((f"{name} =", f"{name}=", f"def {name}(")):
            return number
    return None


def describe_zoo_model(name: str) -> dict:
    """A zoo model's name, summary, input and output shapes and parameter count (imports torch)."""
    import torch

    import zoo

    loaded = load_model(zoo.model_path(name))
    with torch.no_grad(), torch.random.fork_rng():
        output = loaded.module(*loaded.example_inputs)
    first = output[0] if isinstance(output, (tuple, list)) else output
    return {"name": name, "summary": zoo.summary(name), "input_shape": list(loaded.example_input.shape),
            "input_shapes": [list(e.shape) for e in loaded.example_inputs],
            "output_shape": list(first.shape), "parameters": loaded.parameters,
            "block_size": loaded.block_size, "sample_rate": loaded.sample_rate}
