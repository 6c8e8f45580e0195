"""Run a compiled model once on its reference inputs and return the output."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ..errors import BenchError
from ..pipeline.targets import Target
from ..pipeline.tools import run_tool
from .runtime_tools import module_mode, tool_command

RUN_TIMEOUT = 300.0


def input_files(artifact_dir: Path, work: Path) -> list[Path]:
    """The reference inputs (example input, then any noise inputs) as .npy files, in call order."""
    with np.load(artifact_dir / "inputs.npz") as inputs:
        paths = []
        for index, name in enumerate(inputs.files):
            path = work / f"input{index}.npy"
            np.save(path, inputs[name])
            paths.append(path)
    return paths


def output_sizes(artifact_dir: Path) -> list[int]:
    """Each output's float count (export.json's "outputs"; one output for older exports)."""
    info = json.loads((artifact_dir / "export.json").read_text())
    return [int(np.prod(o["shape"])) for o in info.get("outputs", [info["output"]])]


def run_module(artifact_dir: Path, target: Target, timeout: float = RUN_TIMEOUT) -> np.ndarray:
    """The output (several outputs: flattened and joined in order, as expected.npy holds them)."""
    prefix, _ = tool_command(target, "iree-run-module")
    with tempfile.TemporaryDirectory(prefix="bela-iree-run-") as tmp:
        work = Path(tmp)
        outputs = [work / f"output{i}.npy" for i in range(len(output_sizes(artifact_dir)))]
        argv = [*prefix, *module_mode(target), f"--module={artifact_dir / 'model.vmfb'}", "--device=local-sync", "--function=main",
                *[f"--input=@{p}" for p in input_files(artifact_dir, work)], *[f"--output=@{p}" for p in outputs]]
        result = run_tool(argv, timeout=timeout, stage="benchmarking")
        if result.returncode != 0 or not all(p.exists() for p in outputs):
            raise BenchError(f"the model failed to run on {target.name}: {_last_line(result.stderr)}",
                             detail=result.stderr[-4000:])
        arrays = [_as_declared(np.load(p), dtype) for p, dtype in zip(outputs, output_dtypes(artifact_dir))]
        return arrays[0] if len(arrays) == 1 else np.concatenate([a.reshape(-1) for a in arrays])


def output_dtypes(artifact_dir: Path) -> list[str]:
    info = json.loads((artifact_dir / "export.json").read_text())
    return [o.get("dtype", "float32") for o in info.get("outputs", [info["output"]])]


def _as_declared(array: np.ndarray, dtype: str) -> np.ndarray:
    """IREE's integers are signless: iree-run-module writes a uint8 output as int8 (same bits)."""
    if dtype.startswith("uint") and array.dtype.kind == "i" and np.dtype(dtype).itemsize == array.itemsize:
        return array.view(dtype)
    return array


def max_abs_error(output: np.ndarray, artifact_dir: Path) -> float:
    expected = np.load(artifact_dir / "expected.npy")
    return float(np.max(np.abs(output.reshape(expected.shape) - expected)))


def _last_line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1][:300] if lines else "no output"


ABSOLUTE_TOLERANCE = 1e-4
RELATIVE_TOLERANCE = 1e-4


def tolerance(expected: np.ndarray) -> float:
    """Largest max-abs error accepted against PyTorch: 1e-4 plus 1e-4 of the output's scale.
    float32 kernels reorder sums; this is well above that and far below any real bug."""
    return ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * float(np.max(np.abs(expected)))
