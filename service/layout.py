"""A project's layout, here and on a board: every file and folder name, defined once.

    PROJECT/            user-owned files (USER_FILES), written once by `new`, never again
      generated/        service-owned: rewritten by builds, kept across them
        model/          the compiled model and its glue, swapped in whole by each build
        history.sqlite  every build (survives restarts)
        board-sync.json what was last put on each board

On a board the Bela folder is BOARD_ROOT (Bela images log in as root, so `~/Bela` is
`/root/Bela`); projects live in BOARD_ROOT/projects/NAME, the IREE runtime in
BOARD_ROOT/libraries/iree.
"""
from __future__ import annotations

MODEL_FILE = "model.py"
CONFIG = "bela-iree.toml"
USER_FILES = ("render.cpp", MODEL_FILE, "settings.json", CONFIG, "README.md")
GENERATED = "generated"
MODEL_DIR = f"{GENERATED}/model"
HISTORY = f"{GENERATED}/history.sqlite"
BOARD_SYNC_STATE = f"{GENERATED}/board-sync.json"

# The running program swaps these in live (docs/design.md, "Live model swap"): a rebuild that
# changes only them reaches the sound without a restart; any other deployed change needs a run.
MODULE_FILE = "model.vmfb"         # in MODEL_DIR
BUILD_RECORD = "build.json"        # in MODEL_DIR: {"build", "sha256"} of the module beside it
LIVE_SWAP_FILES = (MODULE_FILE, BUILD_RECORD)
# What the running program plays, kept by its auxiliary task in the project folder (JSON, see
# docs/design.md "The board's status file"); `board status` and the panel read it.
STATUS_FILE = "bela-iree-status.json"

BOARD_ROOT = "~/Bela"
BOARD_HOME = "/root"              # what `~` is on a Bela: make flags need absolute paths
RUNTIME_SUBDIR = "libraries/iree"  # BOARD_ROOT/RUNTIME_SUBDIR: include/ lib/ bin/ manifest.json


def absolute_on_board(path: str) -> str:
    """A board path with `~` spelled out, for the make flags the Bela IDE passes to the compiler."""
    return BOARD_HOME + path[1:] if path.startswith("~") else path


def board_project_dir(board_root: str, project_name: str) -> str:
    return f"{board_root}/projects/{project_name}"


def board_runtime_dir(board_root: str) -> str:
    return f"{board_root}/{RUNTIME_SUBDIR}"
