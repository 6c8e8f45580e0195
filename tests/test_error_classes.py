"""Each failure class a maker meets gives one line (what, and which op where it can), at the model
file's line, with a hint for that cause and not another's; the diagnostic goes to the log only."""
import textwrap
from pathlib import Path

import pytest

from service.errors import CompileError, ExportError
from service.pipeline import compile_errors, export_errors
from service.pipeline.compile import CompileOptions, compile_model
from service.pipeline.export import export_model
from service.pipeline.targets import TARGETS

from .conftest import cli


def model_file(folder: Path, forward: str, example: str = "torch.randn(1, 8)", setup: str = "") -> Path:
    path = folder / "model.py"
    path.write_text(textwrap.dedent(f"""\
        import torch

        class M(torch.nn.Module):
            def forward(self, x):
                {forward}

        {setup or 'model = M()'}
        example_input = {example}
        """))
    return path


def export_fails(path: Path) -> ExportError:
    with pytest.raises(ExportError) as caught:
        export_model(path, path.parent / "out")
    return caught.value


# the hints of the causes, each one's own (no other class's hint may appear)
HINTS = {"control flow": export_errors.CONTROL_FLOW_HINT, "trace": export_errors.TRACE_HINT,
         "own": export_errors.OWN_ERROR_HINT, "dtype": export_errors.DTYPE_HINT,
         "unsupported op": compile_errors.UNSUPPORTED_OP_HINT,
         "compiler": compile_errors.COMPILER_HINT, "compile dtype": compile_errors.DTYPE_HINT}


def assert_class(error, cause: str, line: int | None, *words: str):
    assert error.hint == HINTS[cause], (error.hint, cause)
    assert "\n" not in error.message and all(w in error.message for w in words), error.message
    assert Path(error.file).name == "model.py" and error.line == line


def test_data_dependent_control_flow(tmp_path):
    error = export_fails(model_file(tmp_path, "return x * 2 if x.sum() > 0 else x"))
    assert_class(error, "control flow", 5, "data-dependent control flow")
    assert "GuardOnDataDependentSymNode" in error.detail   # the full story is in the log


def test_something_torch_export_cannot_trace(tmp_path):
    error = export_fails(model_file(tmp_path, "return x * float(x.detach().numpy().max())"))
    assert_class(error, "trace", 5, "export failed", ".numpy()")


def test_the_models_own_exception(tmp_path):
    error = export_fails(model_file(tmp_path, "raise ValueError('expected [dim] of 4 samples')"))
    assert_class(error, "own", 5, "forward() raised ValueError", "[dim]")


def test_float64_names_the_op_and_line(tmp_path):
    error = export_fails(model_file(tmp_path, "return (x.double() * 3).float()"))
    assert_class(error, "dtype", 5, "aten._to_copy" if "_to_copy" in error.message else "aten.to", "float64")


def test_float64_model_and_input(tmp_path):
    error = export_fails(model_file(tmp_path, "return x", "torch.randn(1, 8, dtype=torch.float64)"))
    assert_class(error, "dtype", 8, "example_input is float64")
    error = export_fails(model_file(tmp_path, "return x", setup="model = torch.nn.Linear(8, 2).double()"))
    assert_class(error, "dtype", 7, "float64")


def test_op_iree_cannot_lower(tmp_path):
    path = model_file(tmp_path, "return torch.igamma(x.abs() + 1, x.abs() + 2)")
    with pytest.raises(CompileError) as caught:
        compile_model(path, CompileOptions(TARGETS["host"]), tmp_path / "out")
    assert_class(caught.value, "unsupported op", 5, "IREE cannot compile aten.igamma")
    assert "failed to legalize" in caught.value.detail and "vtensor" not in caught.value.message


def test_complex_arithmetic_iree_cannot_compile(tmp_path):
    # a complex output is compiled (as real pairs), and so are FFTs, add and scaling; exp is not
    path = model_file(tmp_path, "return torch.exp(torch.fft.rfft(x) * 2)")
    with pytest.raises(CompileError) as caught:
        compile_model(path, CompileOptions(TARGETS["host"]), tmp_path / "out")
    assert_class(caught.value, "compile dtype", 5, "complex")


def test_failure_inside_iree_compile(tmp_path):
    # IREE 3.13 fails on an arange of bytes ("for conversion to byte or char type dstOriginalDtype
    # has to be passed"), found by benchmarks/op_coverage.py (linalg.matrix_power's decomposition)
    path = model_file(tmp_path, "return x + torch.arange(8, dtype=torch.uint8).float()")
    with pytest.raises(CompileError) as caught:
        compile_model(path, CompileOptions(TARGETS["host"]), tmp_path / "out")
    assert_class(caught.value, "compiler", 5, "iree-compile failed", "byte")


def test_cli_prints_one_plain_line_hint_and_log(tmp_path):
    path = model_file(tmp_path, "raise ValueError('expected [dim] of [red]4[/red] samples')")
    result = cli("compile", str(path), "--target", "host", "--out", str(tmp_path / "out"), check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert lines[0] == (f"error (export): {path}:5: forward() raised ValueError: "
                        "expected [dim] of [red]4[/red] samples")   # printed as written, on one line
    assert lines[1] == f"  hint: {export_errors.OWN_ERROR_HINT}"
    assert lines[2].startswith("  full diagnostic: ") and len(lines) == 3
    assert "Traceback" in Path(lines[2].split(": ", 1)[1]).read_text()
