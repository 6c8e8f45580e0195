"""`bela-iree board setup`: the IREE runtime that matches the board, installed into
BOARD_ROOT/libraries/iree.

Atomic: the new install is assembled beside the old one (a copy of it, then only the files
that differ), and swapped in with two renames; a cable pulled mid-copy leaves the old install
working and a staging folder the next run starts over. Idempotent: when the board already has
every file (by sha256), nothing is sent. Then the probe module runs there.
"""
from __future__ import annotations

import asyncio
import hashlib
import shlex
from pathlib import Path

import asyncssh

from ..errors import BoardError
from ..pipeline.targets import get_target
from ..runtimes.build import MANIFEST, Reporter, ensure_runtime
from .connection import Board
from .runtime_check import probe_runtime

# `uname -m` on the board -> the target its runtime is built for
ARCH_TARGETS = {"armv7l": "bela", "armv7": "bela", "aarch64": "gem", "x86_64": "host"}


async def board_target(board: Board) -> str:
    arch = (await board.run("uname -m")).strip()
    if arch not in ARCH_TARGETS:
        raise BoardError(f"the board is {arch}; bela-iree builds runtimes for {', '.join(ARCH_TARGETS)}")
    return ARCH_TARGETS[arch]


async def setup_board(board: Board, target_name: str | None = None, source: str | None = None,
                      commit: str | None = None, reporter: Reporter | None = None) -> dict:
    """Install the runtime; the `board setup --json` object. The reporter sees the build and each file sent."""
    reporter = reporter or Reporter()
    target = get_target(target_name or await board_target(board))
    install, _ = await asyncio.to_thread(ensure_runtime, target.name, source, commit, reporter)
    ours = {**install.manifest["files"], MANIFEST: _sha256(install.folder / MANIFEST)}
    remote = board.runtime_dir
    theirs = await board.hashes(remote)
    changed = sorted(name for name, digest in ours.items() if theirs.get(name) != digest)
    removed = sorted(set(theirs) - set(ours))
    if changed or removed:
        reporter.stage(f"sending the runtime to {board.address}")
        try:
            await _install(board, install.folder, remote, changed, removed, reporter.step)
        except (asyncssh.Error, OSError, BoardError) as e:
            board.connection = None
            raise BoardError(f"the runtime could not be sent to {board.address} ({e}); the previous install is "
                             "untouched", hint=f"run bela-iree board setup {board.address} again") from None
    board.tools_setting = board.tools_setting or f"{remote}/bin"
    probe = await probe_runtime(board, target)
    board.runtime_checked = target.name
    return {"board": str(board.address), "target": target.name, "dir": remote, "copied": changed, "removed": removed,
            "unchanged": len(ours) - len(changed), "probe": probe,
            "runtime": {key: install.manifest[key] for key in
                        ("iree_commit", "compiler_version", "matches_compiler", "glibc", "toolchain")}}


async def _install(board: Board, local: Path, remote: str, changed: list[str], removed: list[str], on_file) -> None:
    q = shlex.quote
    staging, old = f"{remote}.setup-staging", f"{remote}.setup-old"
    # a copy of the current install (hard links: instant, and the originals stay untouched as
    # every changed file is replaced by a new upload, never written in place)
    await board.run(f"rm -rf {q(staging)} && mkdir -p {q(str(Path(remote).parent))} && "
                    f"if [ -d {q(remote)} ]; then cp -al {q(remote)} {q(staging)}; else mkdir {q(staging)}; fi")
    folders = sorted({str(Path(name).parent) for name in changed} - {"."})
    if folders:
        await board.run(f"cd {q(staging)} && mkdir -p {' '.join(q(f) for f in folders)}")
    if removed:
        await board.run(f"cd {q(staging)} && rm -f {' '.join(q(name) for name in removed)}")
    async with board.connection.start_sftp_client() as sftp:
        for count, name in enumerate(changed, 1):
            if await sftp.exists(f"{staging}/{name}"):   # a hard link to the old install's file
                await sftp.remove(f"{staging}/{name}")
            await sftp.put(str(local / name), f"{staging}/{name}", preserve=True)
            on_file(count, len(changed))
    await board.run(f"rm -rf {q(old)} && if [ -d {q(remote)} ]; then mv {q(remote)} {q(old)}; fi && "
                    f"mv {q(staging)} {q(remote)} && rm -rf {q(old)}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
