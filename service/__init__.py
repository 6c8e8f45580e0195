"""bela-iree: compile PyTorch models with IREE for Bela, and tell the maker whether they fit."""

__version__ = "0.1.0"
