"""The IREE runtime for a board, built by bela-iree itself (`bela-iree runtime build`, `board setup`).

source.py finds the IREE source, toolchain.py says how each board is compiled for, build.py
builds, installs and caches it, probe.py checks that a runtime runs this compiler's modules.
"""
