"""The build pipeline: export (torch -> MLIR), rewrites, compile (MLIR -> IREE artifacts), cache."""
