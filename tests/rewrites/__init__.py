"""Tests of service/pipeline/rewrites/, one module per family of rules (as the package is split)."""
