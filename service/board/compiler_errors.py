"""Errors from the board's compiler output (gcc and clang: `file:line:col: error: message`).

Paths are made relative to the project's folder (…/projects/NAME/) when they are inside it, so
the panel shows `render.cpp:12` rather than `/root/Bela/projects/NAME/render.cpp:12`. A build that failed
without one such line (a linker error, a missing Makefile) still gets one error: its last
meaningful line, with no file.
"""
from __future__ import annotations

import re

# gcc: "render.cpp:12:5: error: ...", "render.cpp:12: error: ...", "... fatal error: ..."
DIAGNOSTIC = re.compile(r"^(?P<file>[^:\s][^:]*):(?P<line>\d+)(?::(?P<column>\d+))?:\s*(?:fatal )?error:\s*(?P<message>.+)$")
MAKE_LINE = re.compile(r"^make(\[\d+\])?: ")
MAX_ERRORS = 20


def compiler_errors(output: str, project: str | None = None) -> list[dict]:
    """[{"file", "line", "message"}] for each error line of `output`, in order, at most MAX_ERRORS."""
    errors = []
    marker = f"/projects/{project}/" if project else None
    for line in output.splitlines():
        found = DIAGNOSTIC.match(line.strip())
        if not found:
            continue
        file = found["file"]
        if marker and marker in file:
            file = file.split(marker, 1)[1]
        errors.append({"file": file, "line": int(found["line"]), "message": found["message"].strip()})
        if len(errors) == MAX_ERRORS:
            break
    return errors


def failure_errors(output: str, project: str | None = None, fallback: str = "the build failed") -> list[dict]:
    """The errors of a build that failed: the compiler's, else its last line that says something."""
    errors = compiler_errors(output, project)
    if errors:
        return errors
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    # make's own closing line ("make: *** [...] Error 1") says less than the line before it
    said = [line for line in lines if not MAKE_LINE.match(line)] or lines
    return [{"file": None, "line": None, "message": said[-1] if said else fallback}]
