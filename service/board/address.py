"""USER@HOST[:PORT], as given to --board."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

DEFAULT_USER = "root"


@dataclass(frozen=True)
class BoardAddress:
    user: str
    host: str
    port: int = 22

    @classmethod
    def parse(cls, text: str) -> "BoardAddress":
        user, _, rest = text.rpartition("@")
        host, port = rest, 22
        if rest.count(":") == 1:
            host, port_text = rest.split(":")
            if not port_text.isdigit():
                raise UsageError(f"bad port in board address {text!r}", hint="use USER@HOST[:PORT], e.g. root@bela.local")
            port = int(port_text)
        if not host:
            raise UsageError(f"no host in board address {text!r}", hint="use USER@HOST[:PORT], e.g. root@192.168.7.2")
        return cls(user or DEFAULT_USER, host, port)

    def __str__(self) -> str:
        return f"{self.user}@{self.host}" + (f":{self.port}" if self.port != 22 else "")
