"""A real OpenSSH server on a loopback port, with throwaway keys, standing in for a Bela board.

The board's Bela folder is a temporary directory (given to bela-iree with --board-root); a
"Gem board" gets the aarch64 IREE runtime tools, run through qemu-aarch64 (--board-prefix).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from .service_helpers import free_port

SSHD = "/usr/sbin/sshd"


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class FakeBoard:
    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.root = folder / "Bela"
        (self.root / "projects").mkdir(parents=True)
        self.home = folder / "home"       # HOME for bela-iree: its ~/.ssh has the key the board accepts
        (self.home / ".ssh").mkdir(parents=True)
        self.key = keygen(self.home / ".ssh" / "id_ed25519")
        host_key = keygen(folder / "host_key")
        (folder / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        os.chmod(folder / "authorized_keys", 0o600)
        (folder / "sshd_config").write_text(f"""
Port {self.port}
ListenAddress 127.0.0.1
HostKey {host_key}
AuthorizedKeysFile {folder / 'authorized_keys'}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
UsePAM no
StrictModes no
PidFile {folder / 'sshd.pid'}
Subsystem sftp internal-sftp
""")
        self.process = None

    @property
    def address(self) -> str:
        return f"root@127.0.0.1:{self.port}"

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.folder / "sshd_config")],
                                        stderr=open(self.folder / "sshd.log", "a"))
        deadline = time.monotonic() + 10
        import socket
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not start: {(self.folder / 'sshd.log').read_text()[-2000:]}")

    def kill(self) -> None:
        """The cable is pulled: the server and every session it runs go at once."""
        if self.process:
            subprocess.run(["pkill", "-KILL", "-P", str(self.process.pid)], check=False)  # its sessions
            self.process.kill()
            self.process.wait()
            self.process = None

    def install_aarch64_tools(self, version_override: str | None = None) -> Path:
        from service.bench.runtime_tools import aarch64_tools_dir
        tools = self.root / "libraries" / "iree" / "bin"
        shutil.copytree(aarch64_tools_dir(), tools, dirs_exist_ok=True)
        if version_override:
            (tools / "version.py").write_text(f'VERSION = "{version_override}"\n')
        return tools

    def env(self) -> dict:
        return {**os.environ, "HOME": str(self.home)}

    def args(self, tools: bool = True) -> list[str]:
        args = ["--board", self.address, "--board-root", str(self.root)]
        if tools:
            args += ["--board-tools", str(self.root / "libraries/iree/bin"),
                     "--board-prefix", "qemu-aarch64 -L /usr/aarch64-linux-gnu"]
        return args
