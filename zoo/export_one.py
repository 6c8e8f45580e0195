"""Export one zoo model to the formats asked for; run by `python -m zoo` in its own process.

Prints one JSON object: {format: {"path": ...} or {"error": ...}}. A crash here (even a
segfault inside an exporter) only loses this model's row of the summary.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path


def export_mlir(name: str, out: Path) -> Path:
    from service.pipeline.export import export_model
    from zoo import model_path
    export_model(model_path(name), out, mlir_name=f"{name}.mlir")
    return out / f"{name}.mlir"


def export_onnx(name: str, out: Path) -> Path:
    import torch
    from service.modelfile import load_model
    from zoo import model_path
    loaded = load_model(model_path(name))
    path = out / f"{name}.onnx"
    torch.onnx.export(loaded.module, loaded.example_inputs, str(path), dynamo=True, external_data=False,
                      verbose=False)
    return path


def export_torchscript(name: str, out: Path) -> Path:
    import torch
    from service.modelfile import load_model
    from zoo import model_path
    loaded = load_model(model_path(name))
    path = out / f"{name}.pt"
    with torch.no_grad():
        torch.jit.trace(loaded.module, loaded.example_inputs, check_trace=False).save(str(path))
    return path


EXPORTERS = {"mlir": export_mlir, "onnx": export_onnx, "torchscript": export_torchscript}


def main(argv: list[str]) -> int:
    name, out, formats = argv[0], Path(argv[1]), argv[2].split(",")
    out.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")
    results = {}
    for fmt in formats:
        try:
            results[fmt] = {"path": str(EXPORTERS[fmt](name, out))}
        except Exception as e:  # report, and go on with the next format
            message = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            results[fmt] = {"error": f"{type(e).__name__}: {message}"}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
