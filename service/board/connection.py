"""One SSH connection to a board (asyncssh, with the user's keys or agent), and what we ask of it.

Every failure becomes a one-line BoardError saying what to do: a wrong host, a refused key,
a missing folder or tool. `Board.check()` is `bela-iree board check`.
"""
from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path

import asyncssh

from ..errors import BoardError
from ..layout import BOARD_ROOT, board_runtime_dir
from .address import BoardAddress

CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 120.0


class Board:
    def __init__(self, address: BoardAddress, root: str = BOARD_ROOT, tools: str | None = None,
                 tools_prefix: str = "", client_keys: list[str] | None = None):
        self.address = address
        self.root_setting = root
        self.tools_setting = tools
        self.tools_prefix = shlex.split(tools_prefix)
        self.client_keys = client_keys
        self.connection: asyncssh.SSHClientConnection | None = None
        self.root: str | None = None
        self.runtime_checked: str | None = None   # the target whose probe module ran here

    # ---- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        options = {"username": self.address.user, "port": self.address.port, "known_hosts": None,
                   "connect_timeout": CONNECT_TIMEOUT}
        if self.client_keys is not None:
            options["client_keys"] = self.client_keys
        try:
            self.connection = await asyncssh.connect(self.address.host, **options)
        except asyncssh.PermissionDenied:
            raise BoardError(f"{self.address} refused our SSH key",
                             hint=f"install your key on the board: ssh-copy-id -p {self.address.port} {self.address.user}@{self.address.host}") from None
        except (OSError, asyncio.TimeoutError, asyncssh.Error) as e:
            raise BoardError(f"cannot reach {self.address}: {e}",
                             hint="is the board plugged in and on? check the address (Bela: root@192.168.7.2 or root@bela.local)") from None
        self.root = (await self.run(f"cd {self._shell_path(self.root_setting)} 2>/dev/null && pwd", check=False)).strip() or None

    @property
    def online(self) -> bool:
        return self.connection is not None and not self.connection.is_closed()

    async def close(self) -> None:
        if self.connection:
            self.connection.close()
            await self.connection.wait_closed()
        self.connection = None

    @staticmethod
    def _shell_path(path: str) -> str:
        """Quote a remote path but let a leading ~ expand."""
        if path == "~" or path.startswith("~/"):
            return "~/" + shlex.quote(path[2:]) if len(path) > 2 else "~"
        return shlex.quote(path)

    async def run(self, command: str, check: bool = True, timeout: float = COMMAND_TIMEOUT) -> str:
        """The command's stdout; with `check`, a failure (exit status not 0) is a BoardError."""
        result = await self.run_result(command, timeout)
        if check and result.exit_status != 0:
            raise BoardError(f"on the board, `{command[:120]}` failed: {(result.stderr or result.stdout).strip()[:300]}")
        return result.stdout

    async def run_result(self, command: str, timeout: float = COMMAND_TIMEOUT) -> asyncssh.SSHCompletedProcess:
        """The command's stdout, stderr and exit_status, whatever the exit status. Every command
        sent to the board goes through here, so every one has a time limit."""
        if not self.online:
            raise BoardError(f"{self.address} is offline", hint="the board is reconnected automatically")
        try:
            return await asyncio.wait_for(self.connection.run(command, check=False), timeout)
        except asyncio.TimeoutError:
            raise BoardError(f"the board did not answer within {timeout:g} s: {command[:80]}") from None
        except (asyncssh.Error, OSError) as e:
            self.connection = None
            raise BoardError(f"lost the connection to {self.address}: {e}") from None

    async def stream(self, command: str, on_line, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
        """Run a long command (a build), handing each line of its stdout and stderr to `on_line`
        as it comes; returns its exit status and its whole output."""
        if not self.online:
            raise BoardError(f"{self.address} is offline", hint="the board is reconnected automatically")
        lines: list[str] = []

        async def follow(stream) -> None:
            async for line in stream:
                if line.strip():
                    lines.append(line.rstrip("\n"))
                    on_line(lines[-1])
        try:
            async with self.connection.create_process(command) as process:
                await asyncio.wait_for(asyncio.gather(follow(process.stdout), follow(process.stderr), process.wait()),
                                       timeout)
                return process.exit_status, "\n".join(lines)
        except asyncio.TimeoutError:
            raise BoardError(f"the board did not finish within {timeout:g} s: {command[:80]}") from None
        except (asyncssh.Error, OSError) as e:
            self.connection = None
            raise BoardError(f"lost the connection to {self.address}: {e}") from None

    def require_root(self) -> str:
        if not self.root:
            raise BoardError(f"{self.root_setting} does not exist on {self.address}",
                             hint="is this a Bela board? give the Bela folder with --board-root")
        return self.root

    # ---- what the board has -------------------------------------------------------------------

    @property
    def runtime_dir(self) -> str:
        """Where `board setup` installs the IREE runtime."""
        return board_runtime_dir(self.require_root())

    @property
    def tools(self) -> str:
        return self.tools_setting or f"{self.runtime_dir}/bin"

    async def runtime_version(self) -> str | None:
        """The IREE runtime's version: a wheel's version.py or a VERSION file beside the tools."""
        text = await self.run(f"cat {shlex.quote(self.tools)}/version.py {shlex.quote(self.tools)}/VERSION 2>/dev/null", check=False)
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            if line.startswith("VERSION"):
                return line.split("=", 1)[1].strip().strip("\"'")
            if line.strip() and "=" not in line:
                return line.strip()
        return None

    async def require_tools(self) -> None:
        """The board's IREE runtime tools must exist (runtime_check.py then asks whether they work)."""
        tool = f"{shlex.quote(self.tools)}/iree-benchmark-module"
        if (await self.run(f"test -x {tool} && echo yes", check=False)).strip() != "yes":
            raise BoardError(f"no IREE runtime tools in {self.tools} on {self.address}",
                             hint=f"install the IREE runtime: bela-iree board setup {self.address} "
                                  "(or point at tools with --board-tools DIR)")

    async def check(self) -> dict:
        await self.connect()
        try:
            probe = await self.run("uname -m; cat /proc/xenomai/version 2>/dev/null || echo none", check=False)
            arch, xenomai = (probe.strip().splitlines() + ["", "none"])[:2]
            report = {"address": str(self.address), "arch": arch, "xenomai": None if xenomai == "none" else xenomai,
                      "bela_root": self.root, "bela_version": None, "iree_tools": None, "iree_version": None,
                      "free_bytes": None, "problems": []}
            if not self.root:
                report["problems"].append(f"no Bela folder at {self.root_setting}")
            else:
                report["bela_version"] = (await self.run(
                    f"cat {shlex.quote(self.root)}/VERSION 2>/dev/null || git -C {shlex.quote(self.root)} describe --always 2>/dev/null",
                    check=False)).strip() or None
                df = (await self.run(f"df -Pk {shlex.quote(self.root)} | tail -1", check=False)).split()
                report["free_bytes"] = int(df[3]) * 1024 if len(df) > 3 and df[3].isdigit() else None
                try:
                    await self.require_tools()
                    report["iree_tools"] = self.tools
                    report["iree_version"] = await self.runtime_version()
                except BoardError as e:
                    report["problems"].append(f"{e.message} ({e.hint})")
                report["iree_runtime"] = await self.runtime_manifest()
            return report
        finally:
            await self.close()

    async def runtime_manifest(self) -> dict | None:
        """What `board setup` installed (its manifest.json, without the file list), if it did."""
        text = await self.run(f"cat {shlex.quote(self.runtime_dir)}/manifest.json 2>/dev/null",
                              check=False)
        try:
            manifest = json.loads(text)
        except ValueError:
            return None
        manifest.pop("files", None)
        return manifest

    # ---- files ------------------------------------------------------------------------------

    async def put_atomic(self, local: Path, remote: str) -> None:
        """Upload beside the destination, then rename over it: readers see old or new, never half."""
        temporary = f"{remote}.bela-iree-partial"
        async with self.connection.start_sftp_client() as sftp:
            await sftp.put(str(local), temporary)
            await sftp.posix_rename(temporary, remote)

    async def get(self, remote: str, local: Path) -> None:
        async with self.connection.start_sftp_client() as sftp:
            await sftp.get(remote, str(local))

    async def hashes(self, folder: str) -> dict[str, str]:
        """sha256 of every file under folder, by relative path ({} when it does not exist)."""
        text = await self.run(f"cd {shlex.quote(folder)} 2>/dev/null && find . -type f ! -name '*.bela-iree-partial' "
                              f"-exec sha256sum {{}} +", check=False)
        result = {}
        for line in text.splitlines():
            digest, _, name = line.partition("  ")
            if name:
                result[name.removeprefix("./")] = digest
        return result
