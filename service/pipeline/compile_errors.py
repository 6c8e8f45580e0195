"""Why iree-compile failed, in one line with the op, the model's file and line, and a hint for that cause.

iree-compile prints MLIR diagnostics: `file:line:col: error: ...` lines, each followed by notes
(`see current operation: %4 = "torch.aten.isfinite"(...)`, `called from`). Three causes are told
apart:
- an op IREE cannot lower ("failed to legalize operation" naming a torch op): the user can write
  that line with other ops, or bela-iree can gain a rewrite for it;
- a dtype IREE cannot compute in (complex arithmetic, float64 constants);
- anything else: a compiler failure, not the model's fault.
The first error names the op; its location (or the first note in the user's folder) the line.
The diagnostic itself stays in the error's detail (the log).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import CompileError

UNSUPPORTED_OP_HINT = ("IREE has no lowering for this op: write that line with other ops, or report it to "
                       "bela-iree with the log so a rewrite can be added")
DTYPE_HINT = ("IREE computes in float32 and integers here: compute on the real and imaginary parts "
              "(torch.view_as_real, z.real/z.imag) and avoid float64")
COMPILER_HINT = ("a failure inside iree-compile, not an error in the model: report it to bela-iree with the log; "
                 "writing that line another way may avoid it")

_LOCATION = re.compile(r"^(.*?):(\d+)(?::\d+)?: (error|note): (.*)$")   # "<unknown>:0: error: ..." too
_OP_NAMED = re.compile(r'name = "([\w.]+)"')
_OP_QUOTED = re.compile(r"'([a-z_]+\.[\w.]+)'")
_OP_IN_NOTE = re.compile(r'"([a-z_]+\.[\w.]+)"\(')
# the constants of an op that failed are reported after it; they are never the cause
_SECONDARY = ("torch.constant.", "torch.prim.ListConstruct")
_DTYPE_MARKERS = ("complex", "Only integer/float dtype supported", "f64")


def compile_error(stderr: str, model_file: Path) -> CompileError:
    located = [m for m in map(_LOCATION.match, stderr.splitlines()) if m]
    errors = [i for i, m in enumerate(located) if m.group(3) == "error" and not _secondary(m.group(4))]
    # only a constant left behind: an op consumed it and then failed without a diagnostic of its own
    errors = errors or [i for i, m in enumerate(located) if m.group(3) == "error"]
    if not errors:
        tail = stderr.strip().splitlines()[-1:] or ["no output"]
        return CompileError(f"iree-compile failed: {tail[0][:200]}", file=str(model_file), detail=_excerpt(stderr),
                            hint=COMPILER_HINT)
    first = errors[0]
    message = located[first].group(4)
    notes = [m.group(4) for m in located[first + 1:] if m.group(3) == "note"]
    op = _op_of(message, notes)
    file, line = _user_line(located[first:], model_file)
    where = {"file": file or str(model_file), "line": line, "detail": _excerpt(stderr)}
    name = op.removeprefix("torch.") if op else "an op"
    short = re.split(r": %|: \"|: <", message, maxsplit=1)[0].strip()[:160]
    if "failed to legalize" in message and op and op.startswith("torch.") and not _secondary(message):
        return CompileError(f"IREE cannot compile {name} (no lowering for it)", hint=UNSUPPORTED_OP_HINT, **where)
    text = " ".join([message, *notes[:1]])
    if any(marker in text for marker in _DTYPE_MARKERS) and not _secondary(message):
        kind = "complex" if "complex" in text else "float64" if "f64" in text else "these"
        return CompileError(f"IREE cannot compile {name} on {kind} values: {short}", hint=DTYPE_HINT, **where)
    return CompileError(f"iree-compile failed on {name}: {short}" if op else f"iree-compile failed: {short}",
                        hint=COMPILER_HINT, **where)


def _excerpt(stderr: str, keep: int = 6000) -> str:
    """The log's copy: the start (the linker's or pass's own message) and the end (the op dumps)."""
    if len(stderr) <= 2 * keep:
        return stderr
    return f"{stderr[:keep]}\n[... {len(stderr) - 2 * keep} characters left out ...]\n{stderr[-keep:]}"


def _secondary(message: str) -> bool:
    return "failed to legalize" in message and any(f"'{s}" in message for s in _SECONDARY)


def _op_of(message: str, notes: list[str]) -> str | None:
    named = _OP_NAMED.search(message) or _OP_QUOTED.search(message)
    if named and named.group(1) != "torch.operator":
        return named.group(1)
    for note in notes[:2]:   # "see current operation: %5 = "torch.aten.mul.Scalar"(...)"
        found = _OP_NAMED.search(note) or _OP_IN_NOTE.search(note)
        if found:
            return found.group(1)
    return None


def _user_line(located, model_file: Path) -> tuple[str | None, int | None]:
    """The error's own location, else the first note after it that is in the user's folder."""
    for m in located:
        if Path(m.group(1)).resolve().parent == model_file.parent:
            return m.group(1), int(m.group(2))
    return None, None
