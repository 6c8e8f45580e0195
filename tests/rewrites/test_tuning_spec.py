"""tuning_spec.py's configs reach the products the rewrites make: linear.py's packed one-row
Linear and recurrent.py's per-step product."""
import subprocess

from service.pipeline.compile import compile_flags, export_cached
from service.pipeline.targets import TARGETS
from service.pipeline.tools import iree_compile
from service.pipeline.tuning_spec import vector_outputs

from . import test_linear, test_recurrent
from .cases import write_model


def test_the_tuning_spec_reaches_code_generation(tmp_path):
    """The packed product and a recurrent step's product get the spec's config, not IREE's own."""
    lanes = vector_outputs(TARGETS["host"])
    for name, case, config in (("one_row_linears", test_linear.CASES["one_row_linears"],
                                f"vector_common_parallel = [1, 1, {lanes}, 0]"),
                               # a layer too wide for the recurrent kernel: its step's h @ w_hh_t, 72 x 288
                               # (288 = 9 x 32: the widest row config dividing it)
                               ("lstm_wide_loop", test_recurrent.CASES["lstm_wide_loop"],
                                "vector_common_parallel = [1, 32, 0], vector_reduction = [0, 0, 1]")):
        export_dir, _, _ = export_cached(write_model(tmp_path, name, case))
        dump = tmp_path / f"{name}-dump"
        argv = [iree_compile(), str(export_dir / "model.mlirbc"), *compile_flags(TARGETS["host"], "vmfb", "llvm-cpu"),
                f"--iree-hal-dump-executable-files-to={dump}", "-o", str(tmp_path / f"{name}.vmfb")]
        subprocess.run(argv, check=True, capture_output=True)
        configured = "".join(f.read_text() for f in dump.glob("configured_*.mlir"))
        assert config in configured, name
