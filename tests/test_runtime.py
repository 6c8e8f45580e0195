"""`bela-iree runtime build`: what an install holds and says about itself, board programs that
start on the oldest Bela image (armv7, glibc 2.24, under qemu-arm), and where the IREE source
comes from (a tarball, a URL, a folder), with clear errors when it cannot be used."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from service.pipeline.elf_check import glibc_versions_needed

from .conftest import RUNTIME_SOURCE, cli_json
from .realtime import QEMU_ARM

OLDEST_BELA_GLIBC = (2, 24)   # Debian 9 "Stretch", the oldest Bela image
EM_ARM = 0x28
EF_ARM_ABI_FLOAT_HARD = 0x400   # the hard-float ABI Bela's programs and libraries use


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def elf_header(path: Path) -> bytes | None:
    """The first 40 bytes of an ELF file (an ELF32 header up to e_flags), None for any other file."""
    with open(path, "rb") as f:
        header = f.read(40)
    return header if header[:4] == b"\x7fELF" else None


def source_commit() -> str:
    """The IREE commit conftest gave for the runtime source (from third_party/README.md)."""
    commit = os.environ.get("BELA_IREE_RUNTIME_SOURCE_COMMIT", "")
    assert re.fullmatch(r"[0-9a-f]{40}", commit), f"no IREE commit for the runtime source: {commit!r}"
    return commit


def test_a_built_bela_runtime_is_a_cached_lookup_that_says_what_it_is(runtime):
    install = runtime("bela")   # built (or found) first: the command below only looks it up
    data, result = cli_json("runtime", "build", "--target", "bela")
    assert data["cached"] is True and data["seconds"] < 1, data
    assert data["dir"] == str(install.folder)
    assert (data["target"], data["arch"], data["glibc"]) == ("bela", "armv7", "2.24")
    assert set(data["tools"]) == {"iree-run-module", "iree-benchmark-module"}
    for name, path in data["tools"].items():
        assert Path(path) == install.tool(name) and Path(path).is_file() and os.access(path, os.X_OK), path
    assert data["iree_commit"] == source_commit()
    # the kept source is older than the compiler's release: said in the JSON and on the terminal
    assert data["matches_compiler"] is False
    assert any("not the compiler's release" in w and data["iree_commit"][:12] in w for w in data["warnings"]), data
    assert "warning" in result.stderr and "not the compiler's" in result.stderr

    manifest = json.loads((install.folder / "manifest.json").read_text())
    assert manifest == install.manifest
    assert (manifest["target"], manifest["arch"], manifest["glibc"]) == ("bela", "armv7", "2.24")
    assert manifest["iree_commit"] == source_commit() and manifest["matches_compiler"] is False
    on_disk = {str(p.relative_to(install.folder)): sha256(p) for p in sorted(install.folder.rglob("*"))
               if p.is_file() and p.name != "manifest.json"}
    assert manifest["files"] == on_disk   # every file listed, none missing, none changed
    for library in ("libiree_runtime_unified.a", "libflatcc_parsing.a", "libiree_hal_utils_caching_allocator.a",
                    "libiree_hal_local_loaders_static_library_loader.a", "libbela_iree.a", "libbela_iree_compat.a"):
        assert f"lib/{library}" in manifest["files"], library
    assert {"bin/iree-run-module", "bin/iree-benchmark-module", "bin/VERSION", "include/bela_iree/model.h",
            "include/iree/runtime/api.h"} <= set(manifest["files"])
    assert (install.folder / "bin/VERSION").read_text().strip() == manifest["compiler_version"]


def test_bela_programs_are_armv7_for_glibc_2_24_and_start_under_qemu(runtime):
    install = runtime("bela")
    programs = {p.name: p for p in sorted((install.folder / "bin").iterdir()) if elf_header(p)}
    assert set(programs) == {"iree-run-module", "iree-benchmark-module"}   # no host tools in a board install
    for name, program in programs.items():
        header = elf_header(program)
        assert header[4] == 1 and header[5] == 1, f"{name} is not 32-bit little-endian ELF"   # ELFCLASS32, ELFDATA2LSB
        assert int.from_bytes(header[18:20], "little") == EM_ARM, f"{name} is not ARM"
        assert int.from_bytes(header[36:40], "little") & EF_ARM_ABI_FLOAT_HARD, f"{name} is not hard-float"
        needed = glibc_versions_needed(program)
        assert needed, f"{name} asks for no glibc version: not a dynamically linked glibc program?"
        assert max(needed) <= OLDEST_BELA_GLIBC, f"{name} needs glibc {max(needed)}: it would not start on Stretch"
        # starts on a Bela's CPU with the armhf glibc as its C library, and prints its usage
        run = subprocess.run([*QEMU_ARM, str(program), "--help"], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, (name, run.returncode, run.stderr[-2000:])
        assert f"IREE: {name}" in run.stdout and "--module" in run.stdout, run.stdout[:2000]


class TarballServer:
    """RUNTIME_SOURCE served at /iree-runtime-src.tar.gz on a loopback port, recording every GET."""

    def __init__(self, tarball: Path):
        self.requests: list[str] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                requests.append(self.path)
                if self.path != f"/{tarball.name}":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(tarball.stat().st_size))
                self.end_headers()
                with open(tarball, "rb") as f:
                    while chunk := f.read(1 << 20):
                        self.wfile.write(chunk)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/{tarball.name}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def server():
    served = TarballServer(RUNTIME_SOURCE)
    yield served
    served.close()


@pytest.fixture
def fresh_downloads(tmp_path, monkeypatch):
    """A compile cache of this test's own, so its downloads folder starts empty."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BELA_IREE_CACHE", str(cache))
    return cache / "downloads"


def test_a_url_source_is_downloaded_once_and_is_the_same_build_as_the_file(runtime, server, fresh_downloads):
    host = runtime("host")   # built from RUNTIME_SOURCE, the file
    data, _ = cli_json("runtime", "build", "--target", "host", "--source", server.url)
    # the same bytes: the same unpacked source, the same cache key, the same install
    assert data["dir"] == str(host.folder) and data["cached"] is True, data
    assert data["iree_commit"] == source_commit()
    assert server.requests == ["/iree-runtime-src.tar.gz"]
    downloaded = list(fresh_downloads.iterdir())
    assert len(downloaded) == 1 and sha256(downloaded[0]) == sha256(RUNTIME_SOURCE)
    # a second build from the URL uses the download it has
    again, _ = cli_json("runtime", "build", "--target", "host", "--source", server.url)
    assert again["dir"] == data["dir"] and again["cached"] is True
    assert server.requests == ["/iree-runtime-src.tar.gz"]


def test_a_url_that_fails_is_one_clear_error(server, fresh_downloads):
    url = f"{server.base}/no-such-iree.tar.gz"
    data, result = cli_json("runtime", "build", "--target", "host", "--source", url, check=False)
    assert result.returncode == 1
    error = data["error"]
    assert url in error["message"] and "404" in error["message"] and "\n" not in error["message"], error
    assert error["stage"] == "setup" and error["hint"]
    assert "Traceback" not in result.stderr and url in result.stderr.replace("\n", "")
    assert server.requests == ["/no-such-iree.tar.gz"]
    assert not fresh_downloads.exists() or not list(fresh_downloads.iterdir())   # no partial download kept


def test_a_missing_source_is_refused_with_a_hint(tmp_path):
    missing = tmp_path / "iree-src.tar.gz"
    data, result = cli_json("runtime", "build", "--target", "host", "--source", str(missing), check=False)
    assert result.returncode == 1
    assert data["error"]["message"] == f"IREE runtime source {missing} does not exist"
    assert "folder" in data["error"]["hint"] and "tar.gz" in data["error"]["hint"] and "URL" in data["error"]["hint"]
    assert "Traceback" not in result.stderr and "hint:" in result.stderr


def test_a_folder_that_is_not_iree_source_is_refused_with_a_hint(tmp_path):
    folder = tmp_path / "my-project"   # a CMake project, but not IREE (no runtime/)
    (folder / "src").mkdir(parents=True)
    (folder / "CMakeLists.txt").write_text("project(mine)\n")
    data, result = cli_json("runtime", "build", "--target", "host", "--source", str(folder), check=False)
    assert result.returncode == 1
    assert data["error"]["message"] == f"{folder} is not IREE's source (no CMakeLists.txt and runtime/)"
    assert "IREE checkout" in data["error"]["hint"]
    assert "Traceback" not in result.stderr and "hint:" in result.stderr
