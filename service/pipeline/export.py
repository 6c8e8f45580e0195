"""Export: a model file -> torch-dialect MLIR for iree-compile, plus the reference data.

`export_model` runs in a process that has torch imported (a one-shot child of the CLI, or the
service's warm worker). It writes into `out_dir`:
  model.mlirbc      the module (bytecode, with source locations), entry `module.main`
  inputs.npz        the example input and any noise inputs, in call order
  expected.npy      PyTorch's output for exactly those inputs (the accuracy reference)
  stream.npz        a stateful model only: K blocks and PyTorch's outputs, state carried
                    (stream_reference.py)
  export.json       signature, rewrites applied, block size, sample rate, timings, and the files
                    the model file read while loading ("reads": path and sha256, model_reads.py)
`python -m service.pipeline.export MODEL_FILE OUT_DIR [--unroll-loops] [--block N]` does the same
and prints export.json (`--unroll-loops`: recurrent layers unrolled over time, for EmitC;
`--block N`: a block-flexible model exported at N frames per call, pipeline/block_size.py).
"""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

from ..errors import BelaIreeError
from ..modelfile import load_model, model_name
from .decompose import decompose
from .export_errors import check_graph_dtypes, check_input_dtype, export_error

NOISE_SEED = 1234  # noise inputs of the reference run are PyTorch's draws after manual_seed(NOISE_SEED)


def export_model(model_file: Path, out_dir: Path, mlir_name: str = "model.mlirbc", unroll_loops: bool = False,
                 block: int | None = None) -> dict:
    """`block`: export at that many frames per call instead of example_input's (block_size.py)."""
    import numpy as np
    import torch
    from iree.turbine import aot

    from . import rewrites, routing, state, stream_reference

    started = time.perf_counter()
    loaded = load_model(model_file)
    if block:
        from .block_size import at_block
        loaded = at_block(loaded, block)
    examples = loaded.example_inputs
    for example in examples:
        check_input_dtype(example, model_file)
    sources, destinations = routing.declared(loaded)
    try:
        program = torch.export.export(loaded.module, examples)
        program, applied, noise = rewrites.apply(program, examples, unroll_loops)
        check_graph_dtypes(program, model_file)   # on the ops as written, before they are decomposed
        program = state.functionalize(program, model_file, decompose)
    except BelaIreeError:
        raise
    except Exception as e:
        raise export_error(e, model_file) from None
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(NOISE_SEED)
        returned = copy.deepcopy(loaded.module)(*examples)   # a copy: the buffers must keep their starting values
    outputs = routing.output_tensors(returned, model_file)
    destinations = routing.check_outputs(destinations, len(outputs), loaded)
    expected = routing.joined(outputs)
    noise_values = rewrites.draw_noise(noise, NOISE_SEED)
    try:
        output = aot.export(program)
        reset = state.add_reset(output.mlir_module)
    except Exception as e:
        raise export_error(e, model_file) from None

    out_dir.mkdir(parents=True, exist_ok=True)
    if mlir_name.endswith(".mlirbc"):
        with open(out_dir / mlir_name, "wb") as f:
            output.mlir_module.operation.write_bytecode(f)
    else:  # readable text, with the source locations kept
        with open(out_dir / mlir_name, "w") as f:
            output.mlir_module.operation.print(file=f, enable_debug_info=True, large_elements_limit=None)
    np.savez(out_dir / "inputs.npz", *[t.numpy() for t in (*examples, *noise_values)])
    np.save(out_dir / "expected.npy", expected.detach().numpy())
    if reset:   # stateful: K blocks in turn, state carried (bench's streaming check)
        stream_reference.write_stream_reference(loaded.module, examples, noise, NOISE_SEED, out_dir)
    info = {
        "model": model_name(model_file),
        "model_file": str(model_file),
        "inputs": [{"shape": list(e.shape), "dtype": "float32", "role": "input", **routing.source_of(sources, i)}
                   for i, e in enumerate(examples)] + [n.to_json() for n in noise],
        # several outputs: "output" is what expected.npy holds, each output flattened, joined in order
        "output": {"shape": list(expected.shape), "dtype": str(expected.dtype).removeprefix("torch.")},
        "outputs": [{"shape": list(o.shape), "dtype": str(o.dtype).removeprefix("torch."),
                     **routing.destination_of(destinations, i)} for i, o in enumerate(outputs)],
        "rewrites": applied,
        "state": {"buffers": state.state_buffers(program), "reset": reset} if reset else None,
        "unrolled_loops": unroll_loops,
        "parameters": loaded.parameters,
        "block_size": loaded.block_size,
        "sample_rate": loaded.sample_rate,
        "reads": loaded.reads,
        "seconds": round(time.perf_counter() - started, 3),
    }
    (out_dir / "export.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv: list[str]) -> int:
    model_file, out_dir = Path(argv[0]), Path(argv[1])
    try:
        options = argv[2:]
        block = int(options[options.index("--block") + 1]) if "--block" in options else None
        info = export_model(model_file, out_dir, unroll_loops="--unroll-loops" in options, block=block)
    except BelaIreeError as e:
        print(json.dumps({"error": e.to_json(), "detail": e.detail}))
        return 1
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
