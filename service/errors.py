"""One error hierarchy for the whole tool.

Every error knows the build stage it belongs to, and where it can, the file and line the user
should look at and a hint of what to do. `to_json()` is the shape the CLI and the websocket send.
"""
from __future__ import annotations


class BelaIreeError(Exception):
    stage = "unknown"
    reads: list | None = None   # an export's: the files the model file read before it failed (model_reads.py)

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 hint: str | None = None, detail: str | None = None, stage: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.hint = hint
        self.detail = detail  # the tool's full output, for logs; never the headline
        if stage:
            self.stage = stage

    def where(self) -> str:
        if self.file and self.line:
            return f"{self.file}:{self.line}: "
        return f"{self.file}: " if self.file else ""

    def __str__(self) -> str:
        text = f"{self.where()}{self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text

    def to_json(self) -> dict:
        return {"stage": self.stage, "message": self.message, "file": self.file,
                "line": self.line, "hint": self.hint}

    @classmethod
    def from_json(cls, data: dict, detail: str | None = None) -> "BelaIreeError":
        return cls(data.get("message", "unknown error"), file=data.get("file"), line=data.get("line"),
                   hint=data.get("hint"), stage=data.get("stage"), detail=detail)


class UsageError(BelaIreeError):
    """Wrong command-line input: unknown model, target or format."""
    stage = "usage"


class ModelFileError(BelaIreeError):
    """model.py cannot be loaded or does not follow the model file contract."""
    stage = "export"


class ExportError(BelaIreeError):
    """torch.export or the MLIR import failed."""
    stage = "export"


class CompileError(BelaIreeError):
    """iree-compile rejected the model."""
    stage = "compile"


class ToolTimeout(BelaIreeError):
    """An external tool ran past its time limit and was killed."""


class ToolMissing(BelaIreeError):
    """An external tool the target needs is not installed."""
    stage = "setup"


class BenchError(BelaIreeError):
    """The compiled model could not be run or measured."""
    stage = "benchmarking"


class BoardError(BelaIreeError):
    """The board cannot be reached, refuses us, or lacks something we need."""
    stage = "board"


class Cancelled(Exception):
    """A newer save superseded this work (not a BelaIreeError: nothing failed, and no step may
    take it for a failed variant and carry on)."""
