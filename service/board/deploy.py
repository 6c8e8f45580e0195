"""Deploying a project to ~/Bela/projects/NAME: only changed files travel, nothing half-copied.

User files go one by one, each uploaded beside its destination and renamed into place, and
only when the board's copy is missing or still the one we put there (a file edited on the
board is the user's, and is pulled, never overwritten). generated/model is staged as a whole
in a sibling folder (unchanged files copied on the board, changed ones uploaded) and swapped
in with two renames, so the Bela IDE never builds a half-copied model.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

from ..layout import BOARD_SYNC_STATE, GENERATED, MODEL_DIR, USER_FILES, board_project_dir
from .connection import Board


def local_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Deployer:
    def __init__(self, board: Board, project: Path):
        self.board = board
        self.project = project
        # user file -> hash we last put on (or pulled from) this board, kept across runs
        # (one file for every board this project went to: read once, here, and rewritten whole)
        self.state_file = project / BOARD_SYNC_STATE
        self.saved: dict[str, dict[str, str]] = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        self.pushed: dict[str, str] = self.saved.setdefault(str(board.address), {})

    def _remember(self, name: str, digest: str) -> None:
        self.pushed[name] = digest
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.saved, indent=1))
        temporary.replace(self.state_file)

    @property
    def remote_project(self) -> str:
        return board_project_dir(self.board.require_root(), self.project.name)

    async def deploy(self) -> dict:
        """Returns {"uploaded": [...], "unchanged": n}."""
        remote = self.remote_project
        await self.board.run(f"mkdir -p {shlex.quote(remote)}/{GENERATED}")
        uploaded, unchanged = await self._user_files(remote), 0
        local_model = self.project / MODEL_DIR
        mine = local_hashes(local_model)
        theirs = await self.board.hashes(f"{remote}/{MODEL_DIR}")
        if mine == theirs:
            return {"uploaded": uploaded, "unchanged": len(mine)}
        staging = f"{remote}/generated/.model-staging"
        q = shlex.quote
        await self.board.run(f"rm -rf {q(staging)} && (cp -a {q(remote)}/{MODEL_DIR} {q(staging)} 2>/dev/null || mkdir -p {q(staging)})")
        for name, digest in mine.items():
            if theirs.get(name) == digest:
                unchanged += 1
                continue
            await self.board.run(f"mkdir -p {q(staging + '/' + str(Path(name).parent))}")
            await self.board.put_atomic(local_model / name, f"{staging}/{name}")
            uploaded.append(f"{MODEL_DIR}/{name}")
        for name in set(theirs) - set(mine):
            await self.board.run(f"rm -f {q(staging + '/' + name)}")
        old = f"{remote}/generated/.model-old"
        await self.board.run(f"rm -rf {q(old)}; if [ -d {q(remote)}/{MODEL_DIR} ]; then mv {q(remote)}/{MODEL_DIR} {q(old)}; fi; "
                             f"mv {q(staging)} {q(remote)}/{MODEL_DIR} && rm -rf {q(old)}")
        return {"uploaded": uploaded, "unchanged": unchanged}

    async def _user_files(self, remote: str) -> list[str]:
        theirs = await self.board.hashes(remote)
        uploaded = []
        for name in USER_FILES:
            path = self.project / name
            if not path.exists():
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            remote_digest = theirs.get(name)
            if remote_digest == digest:
                if self.pushed.get(name) != digest:
                    self._remember(name, digest)
                continue
            if remote_digest is None or remote_digest == self.pushed.get(name):
                await self.board.put_atomic(path, f"{remote}/{name}")
                self._remember(name, digest)
                uploaded.append(name)
        return uploaded

    async def pull_changed(self, names: tuple[str, ...] = ("model.py", "bela-iree.toml")) -> list[str]:
        """Files edited on the board since we last synced them: copied here (atomically)."""
        theirs = await self.board.hashes(self.remote_project)
        pulled = []
        for name in names:
            digest = theirs.get(name)
            local = self.project / name
            local_digest = hashlib.sha256(local.read_bytes()).hexdigest() if local.exists() else None
            if digest is None or digest == local_digest or digest == self.pushed.get(name):
                continue
            temporary = local.with_name(f".{name}.from-board")
            await self.board.get(f"{self.remote_project}/{name}", temporary)
            temporary.replace(local)
            self._remember(name, digest)
            pulled.append(name)
        return pulled
