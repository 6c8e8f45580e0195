"""Op coverage: PyTorch's own operator database through bela-iree on this computer.

For every OpInfo of `torch.testing._internal.common_methods_invocations.op_db` that supports
float32 on the CPU, its first float32 sample input (inference only) whose float32 tensor has a
dimension and more than one value (signals do; 0-d samples are not what models feed an op)
becomes a one-op model: that tensor is the model's input, its other tensors are stored as buffers, and
a tuple result is concatenated into one tensor. That model goes through the real pipeline:
torch.export, bela-iree's export (rewrites, dtype checks, MLIR import), iree-compile for `host`
(cached), iree-run-module, and a comparison with PyTorch's output.

A result matches when its max-abs error is within the looser of OpInfo's float32 default
(torch.testing: atol 1e-5, rtol 1.3e-6) and ours (bench's: 1e-4 + 1e-4 * max |expected|); NaN
and inf must sit where PyTorch has them. Ops whose output is random (two eager runs differ),
that return no tensor, or that have no float32 tensor input are listed, not counted; the pass
figure counts the ops torch.export accepts.

    nice -n 10 .venv/bin/python benchmarks/op_coverage.py [--baseline] [--only NAME...] [--jobs 2]

writes benchmarks/op_coverage.json (or op_coverage_baseline.json: without what issue 17 added -
its rewrites and the decomposition to core ATen - for the before/after figure) and benchmarks/op_coverage.md from both.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent
EXPORT_SECONDS, COMPILE_SECONDS, RUN_SECONDS = 60, 120.0, 60.0
OPINFO_ATOL, OPINFO_RTOL = 1e-5, 1.3e-6
# what issue 17 added, left out by --baseline to measure the figure before it: these rewrites,
# and the decomposition to core ATen after them (pipeline/decompose.py)
ISSUE_17_RULES = ("CellAsMath", "InterpolateAsGathers", "CompensatedScan", "ExtremumScan", "FftAsMatmuls",
                  "FftShiftAsSlices", "ComplexOutputs", "ConjAsParts", "PolarAsParts", "ComplexArithmetic", "Angle",
                  "Log10AsLog", "TanAsReducedSinOverCos", "DefinedOps", "CeilModeMaxPool",
                  "CholeskyAsSteps", "LuAsSteps", "QrAsHouseholder", "SpectrumAsJacobi", "EyeAsComparison",
                  "MatrixExpAsTaylor", "SpecialFunctions",
                  "ReductionsByDefinition", "FloatToByteThroughInt", "SeparableAvgPool3d",
                  "EmbeddingBagByMask")

CAUSES = {"pipeline": "our pipeline", "iree": "an IREE limitation", "dtype": "a dtype we do not support"}
DETAILS: dict = {}   # op -> the full diagnostic of its failure (printed with --only)
CASES: dict = {}   # key -> Case, read by the generated model files (see model_source)


@dataclass
class Case:
    module: object
    example: object


@dataclass
class Result:
    op: str
    stage: str = "skipped"     # how far it got: skipped, export, pipeline, compile, run, match, pass
    status: str = "fail"       # pass | fail | not counted
    cause: str = ""            # pipeline | iree | dtype (failures), or why it is not counted
    error: str = ""
    max_abs_err: float | None = None
    tolerance: float | None = None
    rewrites: list = field(default_factory=list)


def op_key(opinfo) -> str:
    return opinfo.name + (f".{opinfo.variant_test_name}" if opinfo.variant_test_name else "")


def build_case(opinfo):
    """(Case, None) or (None, why it is not counted)."""
    import torch
    from torch.utils import _pytree as pytree

    torch.manual_seed(0)
    position = None
    try:   # the first sample with a float32 tensor of at least one dimension (models' signals are)
        for _, sample in zip(range(20), opinfo.sample_inputs("cpu", torch.float32, requires_grad=False)):
            leaves, spec = pytree.tree_flatten((sample.input, sample.args, sample.kwargs))
            position = next((i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)
                             and leaf.dtype == torch.float32 and leaf.dim() > 0 and leaf.numel() > 1), None)
            if position is not None:
                break
    except Exception as e:
        return None, f"no sample input ({type(e).__name__})"
    if position is None:
        return None, "no float32 tensor input"
    op = opinfo.op

    class OneOp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stored = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor) and i != position]
            for i in self.stored:
                self.register_buffer(f"arg{i}", leaves[i].detach().clone())

        def forward(self, x):
            values = list(leaves)
            values[position] = x
            for i in self.stored:
                values[i] = getattr(self, f"arg{i}")
            first, args, kwargs = pytree.tree_unflatten(values, spec)
            return one_tensor(op(first, *args, **kwargs))

    module, example = OneOp().eval(), leaves[position].detach().clone()
    try:
        with torch.no_grad():
            first, second = _run_seeded(module, example, 1), _run_seeded(module, example, 2)
    except Exception as e:
        return None, f"PyTorch itself fails on the sample ({type(e).__name__})"
    if not isinstance(first, torch.Tensor):
        return None, "returns no tensor"
    if not _same(first, second):
        return None, "random output"
    return Case(module, example), None


def one_tensor(result):
    """A tuple of tensors as one flat tensor (real ones as float32: values and indices together)."""
    import torch
    if isinstance(result, torch.Tensor) or not isinstance(result, (tuple, list)):
        return result
    parts = [t for t in result if isinstance(t, torch.Tensor)]
    if not parts or len(parts) != len(result):
        return None
    if len({t.dtype for t in parts}) > 1:
        parts = [t if t.is_complex() else t.to(torch.float32) for t in parts]
    return torch.cat([t.reshape(-1) for t in parts])


def _run_seeded(module, example, seed):
    import torch
    torch.manual_seed(seed)
    return module(example)


def _same(a, b) -> bool:
    import torch
    try:
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b) or torch.allclose(
            a, b, equal_nan=True))
    except Exception:
        return False


def model_source(key: str) -> str:
    return ("import sys\n\n"
            f"case = sys.modules['bela_iree_op_coverage'].CASES[{key!r}]\n"
            "model = case.module\n"
            "example_input = case.example\n")


class _Timeout(Exception):
    pass


def _alarm(*_):
    raise _Timeout()


def export_one(key: str, case: Case, work: Path, result: Result):
    """torch.export alone (does it accept the op?), then bela-iree's export. The export folder, or None."""
    import torch
    from service.errors import BelaIreeError
    from service.pipeline import export_errors
    from service.pipeline.export import export_model

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(EXPORT_SECONDS)
    try:
        try:
            program = torch.export.export(case.module, (case.example,))
        except _Timeout:
            raise
        except Exception as e:
            result.stage, result.status = "export", "not counted"
            result.cause, result.error = "torch.export rejects it", _one_line(f"{type(e).__name__}: {e}")
            return None
        if any(torch.Tag.nondeterministic_seeded in getattr(node.target, "tags", ())
               for node in program.graph.nodes if node.op == "call_function"):
            result.status, result.cause = "not counted", "random output"   # OpInfo seeds it for PyTorch alone
            return None
        folder = work / re.sub(r"[^\w.-]", "_", key)
        folder.mkdir(parents=True)
        (folder / "model.py").write_text(model_source(key))
        try:
            info = export_model(folder / "model.py", folder / "export")
        except BelaIreeError as e:
            result.stage, result.error = "pipeline", _one_line(e.message)
            dtype = e.hint == export_errors.DTYPE_HINT
            in_iree = "iree/turbine" in (e.detail or "") or "iree/compiler" in (e.detail or "")
            result.cause = "dtype" if dtype else "iree" if in_iree else "pipeline"
            return None
        except _Timeout:
            raise
        except Exception as e:   # a bug of ours, said as such
            result.stage, result.cause, result.error = "pipeline", "pipeline", _one_line(f"{type(e).__name__}: {e}")
            return None
    except _Timeout:
        result.stage, result.cause, result.error = "pipeline", "pipeline", f"export took over {EXPORT_SECONDS} s"
        return None
    finally:
        signal.alarm(0)
    result.rewrites = info["rewrites"]
    return folder / "export", info


def compile_and_run(export_dir: Path, info: dict, result: Result) -> Result:
    import numpy as np
    from service.bench.run import run_module, tolerance
    from service.errors import BelaIreeError
    from service.pipeline import compile_errors
    from service.pipeline.compile import compile_exported
    from service.pipeline.targets import TARGETS

    host = TARGETS["host"]
    try:
        entry, _, _ = compile_exported(export_dir, info, host, "vmfb", "llvm-cpu", timeout=COMPILE_SECONDS)
    except BelaIreeError as e:
        DETAILS[result.op] = e.detail or ""
        result.stage, result.error = "compile", _one_line(f"{e.where()}{e.message}".split(": ", 1)[-1])
        result.cause = "dtype" if e.hint == compile_errors.DTYPE_HINT else "iree"
        return result
    try:
        output = run_module(entry, host, timeout=RUN_SECONDS)
    except BelaIreeError as e:
        result.stage, result.cause, result.error = "run", "iree", _one_line(e.message)
        return result
    expected = np.load(entry / "expected.npy")
    result.stage = "match"
    if output.size != expected.size:
        result.cause, result.error = _wrong_result_cause(result), f"output has {output.size} values, PyTorch {expected.size}"
        return result
    actual, wanted = output.reshape(expected.shape).astype(np.float64), expected.astype(np.float64)
    special = ~np.isfinite(wanted)
    if not np.array_equal(np.isnan(actual), np.isnan(wanted)) or not np.array_equal(actual[special & ~np.isnan(wanted)],
                                                                                   wanted[special & ~np.isnan(wanted)]):
        result.cause, result.error = _wrong_result_cause(result), "NaN or inf where PyTorch has none (or the reverse)"
        return result
    finite = ~special
    error = float(np.max(np.abs(actual[finite] - wanted[finite]))) if finite.any() else 0.0
    scale = float(np.max(np.abs(wanted[finite]))) if finite.any() else 0.0
    result.max_abs_err = error
    result.tolerance = max(tolerance(wanted[finite]) if finite.any() else 1e-4, OPINFO_ATOL + OPINFO_RTOL * scale)
    if error <= result.tolerance:
        result.stage, result.status = "pass", "pass"
    else:
        result.cause, result.error = _wrong_result_cause(result), f"max abs error {error:.3g} > {result.tolerance:.3g}"
    return result


def _wrong_result_cause(result: Result) -> str:
    """A wrong result after one of our rewrites is ours; without one, IREE's."""
    return "pipeline" if result.rewrites else "iree"


def _one_line(text: str) -> str:
    line = next((l.strip() for l in str(text).splitlines() if l.strip()), "")
    return line[:160]


def run(keys: list[str] | None, baseline: bool, jobs: int) -> list[Result]:
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from torch.testing._internal.common_methods_invocations import op_db

    from service.pipeline import export, rewrites
    if baseline:
        rewrites.RULES[:] = [r for r in rewrites.RULES if type(r).__name__ not in ISSUE_17_RULES]
        export.decompose = lambda program: program
    sys.modules["bela_iree_op_coverage"] = sys.modules[__name__]
    logging.getLogger("torch").setLevel(logging.CRITICAL)   # torch.export's own tracebacks: in the results
    ops = [o for o in op_db if o.supports_dtype(torch.float32, "cpu") and (not keys or op_key(o) in keys)]
    results: list[Result] = []
    futures = []
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[tally]}")]
    with tempfile.TemporaryDirectory(prefix="op-coverage-") as tmp, ThreadPoolExecutor(jobs) as pool, \
            Progress(*columns) as progress:
        task = progress.add_task("op coverage", total=len(ops), tally="")

        def done(_):
            progress.advance(task)
            finished = [r for r in results if r.stage in ("pass", "match", "compile", "run")]
            passed = sum(r.status == "pass" for r in finished)
            progress.update(task, tally=f"{passed} pass")

        for opinfo in ops:
            key = op_key(opinfo)
            result = Result(key)
            results.append(result)
            progress.update(task, description=f"{key[:40]:40}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                case, why = build_case(opinfo)
                if case is None:
                    result.status, result.cause = "not counted", why
                    progress.advance(task)
                    continue
                CASES[key] = case
                exported = export_one(key, case, Path(tmp), result)
            if exported is None:
                progress.advance(task)
                continue
            future = pool.submit(compile_and_run, *exported, result)
            future.add_done_callback(done)
            futures.append(future)
        for future in futures:
            future.result()
    return results


def summary(results: list[Result]) -> dict:
    counted = [r for r in results if r.status != "not counted"]
    passed = [r for r in counted if r.status == "pass"]
    return {"ops": len(results), "accepted_by_torch_export": len(counted), "pass": len(passed),
            "pass_percent": round(100 * len(passed) / max(len(counted), 1), 1),
            "by_cause": {cause: sum(r.cause == cause for r in counted if r.status == "fail") for cause in CAUSES},
            "not_counted": len(results) - len(counted)}


def write_markdown(current: dict, baseline: dict | None, path: Path) -> None:
    results = [Result(**r) for r in current["results"]]
    s = current["summary"]
    lines = ["# Op coverage: PyTorch's op database through bela-iree (host)", "",
             f"Generated by `benchmarks/op_coverage.py` ({current['date']}, torch {current['torch']}, "
             f"IREE {current['iree']}, {current['seconds']:.0f} s on this 2-core machine). Each OpInfo of "
             "`op_db` supporting float32 on the CPU, its first float32 sample, inference only, as a one-op model "
             "through the whole pipeline (torch.export, bela-iree's export and rewrites, iree-compile for host, "
             "iree-run-module). It matches when its max-abs error is within the looser of OpInfo's float32 default "
             "(atol 1e-5 + rtol 1.3e-6 x max|expected|) and ours (1e-4 + 1e-4 x max|expected|), with NaN and inf "
             "where PyTorch has them.", "",
             "| | ops |", "| --- | --- |",
             f"| OpInfo entries with float32 on CPU | {s['ops']} |",
             f"| not counted (torch.export rejects them, random output, no tensor result, no float32 input) | "
             f"{s['not_counted']} |",
             f"| **accepted by torch.export** | **{s['accepted_by_torch_export']}** |",
             f"| **pass on host** | **{s['pass']} ({s['pass_percent']}%)** |"]
    lines += [f"| fail: {CAUSES[c]} | {n} |" for c, n in s["by_cause"].items()]
    if baseline:
        b = baseline["summary"]
        lines += ["", f"Before issue 17 (without its rewrites - recurrent cells, interpolation, scans, FFTs and "
                      f"complex values, special functions, linear algebra, reductions, log10, tan, "
                      f"fmod/copysign/roll/..., pooling - and the decomposition to core ATen with the pipeline's "
                      f"own entries; `--baseline`, same run conditions): "
                      f"{b['pass']} of {b['accepted_by_torch_export']} ({b['pass_percent']}%); after: "
                      f"{s['pass']} of {s['accepted_by_torch_export']} ({s['pass_percent']}%)."]
    reasons = {}
    for r in results:
        if r.status == "not counted":
            reasons[r.cause] = reasons.get(r.cause, 0) + 1
    lines += ["", "Not counted: " + ", ".join(f"{why} ({n})" for why, n in sorted(reasons.items(), key=lambda i: -i[1]))
              + ". The IREE failures left are mostly ops whose output size depends on the data "
              "(masked_select, unique_consecutive, tensor_split, combinations), eigenvectors and "
              "non-symmetric eigenvalues, LDL factorization and the incomplete gamma functions; the audio op "
              "set (`service/pipeline/audio_ops.py`) passes whole."]
    lines += ["", "## Failures by cause", ""]
    for cause, title in CAUSES.items():
        failed = [r for r in results if r.status == "fail" and r.cause == cause]
        lines += [f"### {title} ({len(failed)})", "", "| op | stage | error |", "| --- | --- | --- |"]
        lines += [f"| `{r.op}` | {r.stage} | {_cell(r.error)} |" for r in failed] + [""]
    lines += ["## Every op", "", "| op | result | stage reached | max abs err | rewrites / note |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        err = f"{r.max_abs_err:.2g}" if r.max_abs_err is not None else ""
        note = ", ".join(r.rewrites) if r.status == "pass" else (CAUSES.get(r.cause, r.cause))
        lines.append(f"| `{r.op}` | {r.status} | {r.stage} | {err} | {_cell(note)} |")
    path.write_text("\n".join(lines) + "\n")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", action="store_true", help="without the rewrites issue 17 added")
    parser.add_argument("--only", nargs="*", help="these ops only (OpInfo name[.variant]); nothing is written")
    parser.add_argument("--jobs", type=int, default=2, help="compiles and runs at once (default 2)")
    args = parser.parse_args(argv)
    import torch

    from service.pipeline.cache import iree_version
    started = time.perf_counter()
    results = run(args.only, args.baseline, args.jobs)
    data = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "iree": iree_version(), "seconds": time.perf_counter() - started,
            "summary": summary(results), "results": [asdict(r) for r in results]}
    print(json.dumps(data["summary"]))
    if args.only:
        for r in results:
            print(f"{r.op}: {r.status} {r.stage} {CAUSES.get(r.cause, r.cause)} {r.error}")
            if r.op in DETAILS:
                print("    " + DETAILS[r.op][-3000:].replace("\n", "\n    "))
        return 0
    out = HERE / ("op_coverage_baseline.json" if args.baseline else "op_coverage.json")
    out.write_text(json.dumps(data, indent=1))
    current, baseline = HERE / "op_coverage.json", HERE / "op_coverage_baseline.json"
    if current.exists():
        write_markdown(json.loads(current.read_text()),
                       json.loads(baseline.read_text()) if baseline.exists() else None, HERE / "op_coverage.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
