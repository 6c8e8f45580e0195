"""Where the IREE runtime source comes from: a folder, a tarball or a URL, else the release of
the installed iree-base-compiler (fetched with git, with the submodules the runtime needs).

Every source becomes an unpacked folder in the cache and an id that changes when its content
does, so builds are cached by what they were built from.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import BelaIreeError
from ..pipeline import cache
from ..pipeline.tools import run_tool, system_tool

SOURCE_ENV = "BELA_IREE_RUNTIME_SOURCE"
COMMIT_ENV = "BELA_IREE_RUNTIME_SOURCE_COMMIT"
IREE_REPOSITORY = "https://github.com/iree-org/iree"
# Of IREE's submodules the runtime and its tools need only these two.
RUNTIME_SUBMODULES = ("third_party/flatcc", "third_party/benchmark")


class SourceError(BelaIreeError):
    stage = "setup"


@dataclass(frozen=True)
class RuntimeSource:
    folder: Path            # holds IREE's CMakeLists.txt and runtime/
    id: str                 # changes with the content
    commit: str | None      # the IREE commit, when known
    origin: str             # what the user gave (or "release")


def compiler_release() -> tuple[str, str | None]:
    """The installed compiler's version and IREE commit."""
    try:
        from iree.compiler import version
        return version.VERSION, version.REVISIONS.get("IREE")
    except Exception:
        return cache.iree_version(), None


def sources_root() -> Path:
    return runtime_cache_root() / "sources"


def runtime_cache_root() -> Path:
    """Runtime builds take minutes: they live apart from the compile cache (BELA_IREE_RUNTIME_CACHE)."""
    return Path(os.environ.get("BELA_IREE_RUNTIME_CACHE") or cache.cache_root() / "runtimes")


def resolve_source(spec: str | None = None, commit: str | None = None, progress=None) -> RuntimeSource:
    """--source, else $BELA_IREE_RUNTIME_SOURCE, else the compiler's release."""
    spec = spec or os.environ.get(SOURCE_ENV)
    commit = commit or os.environ.get(COMMIT_ENV)
    if not spec:
        return release_source(progress)
    if re.match(r"^https?://", spec):
        return tarball_source(download(spec, progress), commit, origin=spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return folder_source(path, commit)
    if path.is_file():
        return tarball_source(path, commit, origin=str(path))
    raise SourceError(f"IREE runtime source {spec} does not exist",
                      hint="give a folder, a .tar.gz of IREE's source (with third_party/flatcc) or a URL")


def folder_source(path: Path, commit: str | None = None) -> RuntimeSource:
    folder = _iree_root(path)
    git_commit = _git_head(folder)
    if git_commit:
        status = run_tool(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"], timeout=60).stdout
        content = digest_of_tree(folder) if status.strip() else git_commit
    else:
        content = digest_of_tree(folder)
    return RuntimeSource(folder, cache.digest("folder", str(folder), content), commit or git_commit, str(path))


def digest_of_tree(folder: Path) -> str:
    """Names, sizes and modification times of the runtime's sources: cheap, and changes with any edit."""
    entries = []
    for sub in ("CMakeLists.txt", "runtime", "tools", "build_tools/cmake", "third_party"):
        base = folder / sub
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []
        for p in paths:
            stat = p.stat()
            entries.append(f"{p.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}")
    return cache.digest(*entries)


def tarball_source(tarball: Path, commit: str | None, origin: str) -> RuntimeSource:
    sha = _sha256(tarball)
    folder = sources_root() / sha[:32]
    if not folder.exists():
        sources_root().mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=sources_root(), prefix=".unpack-"))
        try:
            with tarfile.open(tarball) as tar:
                commit = commit or _archive_commit(tar)
                tar.extractall(staging, filter="data")
            (staging / "COMMIT").write_text(commit or "")
            os.rename(staging, folder)
        except (tarfile.TarError, OSError) as e:
            shutil.rmtree(staging, ignore_errors=True)
            raise SourceError(f"cannot unpack {origin}: {e}", hint="give a .tar.gz of IREE's source") from None
    commit = commit or (folder / "COMMIT").read_text().strip() or None
    return RuntimeSource(_iree_root(folder), sha[:32], commit, origin)


def release_source(progress=None) -> RuntimeSource:
    """The compiler's own commit of IREE, fetched once with git (shallow, two submodules)."""
    version, commit = compiler_release()
    if not commit:
        raise SourceError(f"cannot tell which IREE commit iree-base-compiler {version} was built from",
                          hint=f"give the source: --source DIR|TARBALL|URL (or {SOURCE_ENV})")
    folder = sources_root() / f"iree-{commit}"
    if not (folder / "CMakeLists.txt").exists():
        git = system_tool("git", "git")
        sources_root().mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=sources_root(), prefix=".git-"))
        log = staging.parent / f"iree-{commit}.log"
        if progress:
            progress(f"fetching IREE {commit[:12]} ({version}) from {IREE_REPOSITORY}")
        steps = [[git, "init", "-q", str(staging)],
                 [git, "-C", str(staging), "fetch", "-q", "--depth", "1", IREE_REPOSITORY, commit],
                 [git, "-C", str(staging), "checkout", "-q", "FETCH_HEAD"],
                 [git, "-C", str(staging), "submodule", "update", "--init", "--depth", "1", *RUNTIME_SUBMODULES]]
        for argv in steps:
            if run_tool(argv, timeout=1800, log=log, stage="setup").returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                raise SourceError(f"could not fetch IREE {commit[:12]} from {IREE_REPOSITORY}", detail=log.read_text(),
                                  hint=f"without network access, give a source: --source DIR|TARBALL|URL (or {SOURCE_ENV})")
        os.rename(staging, folder)
    return RuntimeSource(folder, commit, commit, "release")


def download(url: str, progress=None) -> Path:
    """A URL's tarball, downloaded once into the cache."""
    target = cache.cache_root() / "downloads" / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".tar.gz")
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"downloading {url}")
    partial = target.with_suffix(".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise SourceError(f"cannot download {url}: {e}", hint="check the URL, or give a local folder or tarball") from None
    os.rename(partial, target)
    return target


def _iree_root(path: Path) -> Path:
    """IREE's top folder: path itself, or its only subfolder (a tarball's `iree/`)."""
    if (path / "runtime").is_dir() and (path / "CMakeLists.txt").exists():
        return path
    subs = [p for p in path.iterdir() if p.is_dir()] if path.is_dir() else []
    if len(subs) == 1 and (subs[0] / "runtime").is_dir():
        return subs[0]
    raise SourceError(f"{path} is not IREE's source (no CMakeLists.txt and runtime/)",
                      hint="give the top folder of an IREE checkout, or a tarball of one")


def _git_head(folder: Path) -> str | None:
    if not (folder / ".git").exists():
        return None
    result = run_tool(["git", "-C", str(folder), "rev-parse", "HEAD"], timeout=60)
    return result.stdout.strip() if result.returncode == 0 else None


def _archive_commit(tar: tarfile.TarFile) -> str | None:
    """`git archive` (and GitHub's tarballs) record the commit in the pax header."""
    comment = tar.pax_headers.get("comment", "")
    return comment if re.fullmatch(r"[0-9a-f]{40}", comment) else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
