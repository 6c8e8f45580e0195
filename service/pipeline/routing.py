"""Where a model's inputs come from and its outputs go, as model.py declares them.

A model with several inputs (`example_input` a tuple) or outputs (forward() returns a tuple) may
say, in call order:

    INPUTS = ("audio", "knobs")       # each: audio | analog | knobs | noise
    OUTPUTS = ("audio", "analog")     # each: audio | analog | control

audio / analog: a block of the Bela's audio or analog inputs (outputs), one frame per frame;
knobs: the latest values of analog inputs, read once per block (the model's 2 knob values are
analog inputs 0 and 1); noise: filled by the glue with uniform noise in [0, 1) each block;
control: values the user's render() reads (gModel.latest()). Without INPUTS, the first input is
the block (audio, or analog when short) and any other is knobs; without OUTPUTS, the first output
follows the project's `output` setting and any other is control. docs/design.md has the contract.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ModelFileError

SOURCES = ("audio", "analog", "knobs", "noise")
DESTINATIONS = ("audio", "analog", "control")


def declared(loaded) -> tuple[list[str] | None, list[str] | None]:
    """INPUTS and OUTPUTS of the model file (None when not given), checked against the inputs."""
    namespace = loaded.namespace or {}
    sources = _names(namespace, "INPUTS", SOURCES, loaded.path)
    if sources is not None and len(sources) != len(loaded.example_inputs):
        raise ModelFileError(f"INPUTS names {len(sources)} inputs but example_input has {len(loaded.example_inputs)}",
                             file=str(loaded.path), line=_line(loaded.path, "INPUTS"),
                             hint="give one source per tensor of example_input, in call order")
    return sources, _names(namespace, "OUTPUTS", DESTINATIONS, loaded.path)


def output_tensors(returned, model_file: Path) -> list:
    """forward()'s result as a list of tensors (a tensor, or a tuple or list of them), complex ones
    as real pairs (torch.view_as_real), as the compiled function returns them."""
    import torch

    outputs = list(returned) if isinstance(returned, (tuple, list)) else [returned]
    if not outputs or not all(isinstance(o, torch.Tensor) for o in outputs):
        kinds = ", ".join(type(o).__name__ for o in outputs) or "nothing"
        raise ModelFileError(f"the model returns {kinds}; bela-iree needs a tensor or a tuple of tensors",
                             file=str(model_file), hint="return a tensor, or a tuple of tensors (one per output)")
    return [torch.view_as_real(o.detach().resolve_conj()) if o.is_complex() else o.detach() for o in outputs]


def check_outputs(destinations: list[str] | None, count: int, loaded) -> list[str] | None:
    if destinations is not None and len(destinations) != count:
        raise ModelFileError(f"OUTPUTS names {len(destinations)} outputs but the model returns {count}",
                             file=str(loaded.path), line=_line(loaded.path, "OUTPUTS"),
                             hint="give one destination per returned tensor, in order")
    return destinations


def joined(outputs: list):
    """One output as it is; several flattened and joined in order (what the runtime tools read back)."""
    import torch
    return outputs[0] if len(outputs) == 1 else torch.cat([o.reshape(-1) for o in outputs])


def source_of(sources: list[str] | None, index: int) -> dict:
    return {"source": sources[index]} if sources else ({} if index == 0 else {"source": "knobs"})


def destination_of(destinations: list[str] | None, index: int) -> dict:
    return {"destination": destinations[index]} if destinations else ({} if index == 0 else {"destination": "control"})


def _names(namespace: dict, name: str, allowed: tuple, path: Path) -> list[str] | None:
    if name not in namespace:
        return None
    value = namespace[name]
    values = [value] if isinstance(value, str) else list(value) if isinstance(value, (tuple, list)) else None
    if values is None or not all(v in allowed for v in values):
        raise ModelFileError(f"{name} must be a tuple of {', '.join(allowed)}, not {value!r}", file=str(path),
                             line=_line(path, name), hint=f"for example {name} = {tuple(allowed[:2])!r}")
    return values


def _line(path: Path, name: str) -> int | None:
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if text.startswith((f"{name} =", f"{name}=")):
            return number
    return None
