"""Bela projects: `bela-iree new` (scaffold from templates) and `bela-iree build` (one rebuild).

A project holds user-owned files (USER_FILES), written once by `new` and never again, and the
service-owned folder `generated/`. A build compiles model.py into a staging folder, renders
the glue beside it, and swaps it in as `generated/model/` with two renames, so the Bela IDE
never sees half a model; a failed build leaves the last good one in place. `generated/`
also keeps what must survive builds (the history database).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass, fields
from math import prod
from pathlib import Path

import jinja2

from . import __version__, torchscript
from .errors import ModelFileError, UsageError
from .glue_routing import routing_context
from .layout import (BOARD_ROOT, BUILD_RECORD, CONFIG, GENERATED, MODEL_DIR, MODEL_FILE, MODULE_FILE, STATUS_FILE,
                     absolute_on_board, board_project_dir, board_runtime_dir)
from .pipeline import cache
from .pipeline.compile import CompileOptions, CompileResult, compile_model, export_cached
from .pipeline.targets import BACKENDS, FORMATS, TARGETS, get_target
from .torchscript import TORCHSCRIPT_SUFFIXES
from .runtimes.emitc import LIBRARY as EMITC_LIBRARY, build_emitc_library, library_query_name

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "project_templates"
RUNTIME = REPO / "runtime"
# the IREE runtime libraries a project links, as installed by runtime/README.md's recipe
# (the inline HAL's modules first: runtime/src/model.c registers them for the boards' .vmfb)
IREE_LIBRARIES = ("-liree_modules_hal_inline_inline -liree_modules_hal_loader_loader "
                  "-liree_hal_utils_caching_allocator -liree_runtime_unified -lflatcc_parsing "
                  "-lbela_iree_compat -lpthread -ldl -lm")   # compat: glibc functions old Bela images lack
STATIC_LOADER_LIBRARY = "-liree_hal_local_loaders_static_library_loader"   # EmitC's kernels


@dataclass
class ProjectConfig:
    target: str = "bela"
    format: str = "vmfb"
    backend: str = "llvm-cpu"
    period: int = 128
    block: int = 0                 # frames per model call for a block-flexible model; 0: model.py's own
    input: str = "audio"
    output: str = "audio"
    glue: str = "auto"             # where the model runs: render (inside render()) | aux_task | auto
    iree_runtime_dir: str = absolute_on_board(board_runtime_dir(BOARD_ROOT))
    board_root: str = BOARD_ROOT   # the Bela folder on the board
    board_tools: str = ""          # IREE runtime tools on the board (default: BOARD_ROOT/libraries/iree/bin)
    board_prefix: str = ""         # a command prefix for them (an emulator, for a stand-in board)

    CHOICES = {"target": tuple(TARGETS), "format": FORMATS, "backend": BACKENDS,
               "input": ("audio", "analog"), "output": ("audio", "analog", "control"),
               "glue": ("auto", "render", "aux_task")}

    @classmethod
    def load(cls, project: Path) -> "ProjectConfig":
        path = project / CONFIG
        if not path.exists():
            return cls()
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            line = int(str(e).split("line ")[1].split(",")[0]) if "line " in str(e) else None
            raise ModelFileError(f"{CONFIG} is not valid TOML: {e}", file=str(path), line=line, stage="setup") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"{CONFIG}: unknown setting {', '.join(unknown)}", hint=f"known: {', '.join(sorted(known))}")
        config = cls(**data)
        for name, choices in cls.CHOICES.items():
            if getattr(config, name) not in choices:
                raise UsageError(f"{CONFIG}: {name} = {getattr(config, name)!r}", hint=f"use one of: {', '.join(choices)}")
        return config

    def compile_options(self, target: str | None = None, **limits) -> CompileOptions:
        """This project's CompileOptions (`target` overrides the file's; limits: timeouts, exporter)."""
        return CompileOptions(get_target(target or self.target), self.format, self.backend,
                              block=self.block or None, block_fallback=True, **limits)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def _layout(shape: list[int]) -> tuple[int, int]:
    """(channels, frames) of a tensor shape: (1, N) and (N,) are one channel; (1, C, N) or
    (C, N) with a few channels are C planar channels; anything else is one flat channel."""
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) == 2 and dims[0] <= 8 < dims[1]:
        return dims[0], dims[1]
    return 1, prod(dims)


# What glue = "auto" becomes until the board estimate decides (the blocks work's
# service/glue_choice.choose_glue): the auxiliary task, which fits every model.
AUTO_GLUE = "aux_task"


def resolve_glue(config: ProjectConfig, info: dict) -> str:
    """The glue a build generates: "render" (the model runs inside render(), once per Bela block,
    adding no latency) or "aux_task" (an auxiliary task runs it: two model blocks of latency).
    The project's choice, or for "auto" AUTO_GLUE: the one place "auto" is decided."""
    return AUTO_GLUE if config.glue == "auto" else config.glue


def check_render_glue(config: ProjectConfig, input_frames: int) -> None:
    """glue = "render" calls the model once per Bela block: its block must be Bela's period."""
    if input_frames != config.period:
        raise UsageError(f'{CONFIG}: glue = "render" runs the model once per Bela block, but the model\'s block '
                         f"is {input_frames} frames and period = {config.period}",
                         hint=f"export the model at {config.period} frames (model.py's block), set period = "
                              f'{input_frames}, or use glue = "aux_task"')


def glue_context(project: Path, config: ProjectConfig, compiled: CompileResult) -> dict:
    info = compiled.export
    routing = routing_context(info)
    # the block render() fills frame by frame; a model of knobs only is still called once per block
    block_shape = info["inputs"][routing["block_input"]]["shape"] if routing["block_input"] >= 0 \
        else [1, info["block_size"]]
    in_channels, in_frames = _layout(block_shape)
    outputs = info.get("outputs") or [info["output"]]
    out_channels, out_frames = _layout(outputs[0]["shape"])
    return {**routing,
        "version": __version__, "project": project.name, "model_file": MODEL_FILE, "target": config.target,
        "format": config.format, "module_file": f"{MODEL_DIR}/model.vmfb",
        "input_shape": block_shape, "input_channels": in_channels, "input_frames": in_frames,
        "output_shape": outputs[0]["shape"], "output_count": out_channels * out_frames,
        "output_channels": out_channels, "output_frames": out_frames,
        "output_is_audio": config.output == "audio",
        "sample_rate": info["sample_rate"], "deadline_ms": 1000.0 * in_frames / info["sample_rate"],
        "inputs": info["inputs"],
        "glue": resolve_glue(config, info), "model_input": config.input, "status_file": STATUS_FILE,
        "build_record": f"{MODEL_DIR}/{BUILD_RECORD}", "input_sizes": [prod(i["shape"]) for i in info["inputs"]],
    }


def options_setup(context: dict, config: ProjectConfig) -> str:
    """C++ lines filling bela_iree_model_options_t for this model and back end."""
    lines = ["options.function = BELA_IREE_FUNCTION;", f"options.input_count = {len(context['inputs'])};"]
    for index, model_input in enumerate(context["inputs"]):
        shape = model_input["shape"]
        lines.append(f"options.input_ranks[{index}] = {len(shape)};")
        lines += [f"options.input_shapes[{index}][{d}] = {size};" for d, size in enumerate(shape)]
    lines.append(f"options.output_element_count = {context['output_count']};")
    if len(context["output_counts"]) > 1:
        lines.append(f"options.output_count = {len(context['output_counts'])};")
        lines += [f"options.output_element_counts[{i}] = {n};" for i, n in enumerate(context["output_counts"])]
    if config.format == "emitc":
        lines += ["options.emitc_module_create = module_create;",
                  f"options.static_library_query = {context['library_query']};"]
    else:
        lines.append("options.vmfb_path = BELA_IREE_MODULE_FILE;")
    return "\n".join(lines)


def render_glue(folder: Path, project: Path, config: ProjectConfig, compiled: CompileResult) -> None:
    env = _environment()
    context = glue_context(project, config, compiled)
    if context["glue"] == "render":
        check_render_glue(config, context["input_frames"])
    if config.format == "emitc":
        context["library_query"] = library_query_name(folder / "kernels.h")
    context["options_setup"] = options_setup(context, config)
    (folder / "model_config.h").write_text(env.get_template("generated/model_config.h.j2").render(context))
    for header in ("realtime_model.h", "model_watch.h"):
        (folder / header).write_text(env.get_template(f"generated/{header}.j2").render(context))
    (folder / "bela_iree").mkdir(exist_ok=True)
    shutil.copy(RUNTIME / "include" / "bela_iree" / "model.h", folder / "bela_iree" / "model.h")
    shutil.copy(RUNTIME / "src" / "model.c", folder / "bela_iree_model.c")
    if config.format == "emitc":
        # compiled here for the board (runtimes/emitc.py): the board never compiles module.c
        build_emitc_library(folder, get_target(config.target))
        for name in ("module.c", "kernels.o"):
            (folder / name).unlink(missing_ok=True)   # vmvx has no kernels.o


def project_artifacts(compiled: CompileResult) -> list[str]:
    """What generated/model holds of the compiled model: the .vmfb, or the EmitC module's library."""
    if compiled.format == "emitc":
        return [EMITC_LIBRARY] + (["kernels.h"] if compiled.backend == "llvm-cpu" else [])
    return [p.name for p in compiled.artifacts]


def write_build_record(folder: Path, build_id: int | None) -> None:
    """generated/model/build.json: which build the module beside it is (`serve`'s history id; null
    for `bela-iree build`) and its sha256. The running program's watcher swaps a module in when
    this changes (docs/design.md, "Live model swap"); it is written last, after the module."""
    module = folder / MODULE_FILE
    if not module.exists():
        module = folder / EMITC_LIBRARY   # EmitC: the module is compiled into the program
    sha256 = hashlib.sha256(module.read_bytes()).hexdigest() if module.exists() else None
    (folder / BUILD_RECORD).write_text(json.dumps({"build": build_id, "sha256": sha256}) + "\n")


def swap_in(staging: Path, destination: Path) -> None:
    """Replace destination by staging with two renames; the old folder is removed after."""
    old = destination.with_name(f".{destination.name}.old-{os.getpid()}-{time.monotonic_ns()}")
    if destination.exists():
        os.rename(destination, old)
    os.rename(staging, destination)
    shutil.rmtree(old, ignore_errors=True)


def build_project(project: Path, options: CompileOptions | None = None, on_stage=lambda stage: None,
                  build_id: int | None = None) -> CompileResult:
    """One rebuild of generated/model from model.py and bela-iree.toml (options: the project's
    own, unless given); never touches user files. The result's artifacts are in generated/model,
    with build.json naming build_id (serve's history id)."""
    project = project.resolve()
    model_file = project / MODEL_FILE
    if not model_file.exists():
        raise UsageError(f"{project} has no {MODEL_FILE}", hint="create a project with: bela-iree new DIR")
    config = ProjectConfig.load(project)
    options = options or config.compile_options()
    config.target = options.target.name
    started = time.perf_counter()
    (project / GENERATED).mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=project / GENERATED, prefix=".staging-"))
    try:
        compiled = compile_model(model_file, options, staging, on_stage)
        generate_started = time.perf_counter()
        render_glue(staging, project, config, compiled)
        write_build_record(staging, build_id)
        swap_in(staging, project / MODEL_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = {**compiled.seconds, "generate": round(time.perf_counter() - generate_started, 3),
               "total": round(time.perf_counter() - started, 3)}
    return compiled.but(artifacts=tuple(project / MODEL_DIR / name for name in project_artifacts(compiled)),
                        seconds=seconds, project=project)


def glue_setting(compiled: CompileResult) -> tuple[int | None, str]:
    """(Bela's period, the glue asked for) of the project a build belongs to; (None, "auto") for a
    model outside a project (its own block is then taken as the period)."""
    project = compiled.project or (Path(compiled.export["model_file"]).parent
                                   if compiled.export.get("model_file") else None)
    return project_glue_setting(project)


def project_glue_setting(project: Path | None) -> tuple[int | None, str]:
    """glue_setting for a folder: its bela-iree.toml's period and glue, if it has one."""
    if project is None or not (project / CONFIG).exists():
        return None, "auto"
    try:
        config = ProjectConfig.load(project)
    except (ModelFileError, UsageError):
        return None, "auto"
    return config.period, getattr(config, "glue", "auto")


def default_routing(info: dict, block_flexible: bool = False) -> tuple[str, str]:
    """Audio in, audio out when the model maps a block to a block; otherwise control values.
    What model.py declares (INPUTS, OUTPUTS) comes first; a model of knobs only runs per audio block.
    A short block is audio too when the model takes blocks of any length (it runs over time)."""
    routing = routing_context(info)
    block = info["inputs"][routing["block_input"]] if routing["block_input"] >= 0 else None
    first_output = (info.get("outputs") or [info["output"]])[0]
    in_frames = _layout(block["shape"])[1] if block else info["block_size"]
    out_frames = _layout(first_output["shape"])[1]
    model_input = block.get("source") if block and block.get("source") else \
        "audio" if not block or in_frames >= 64 or block_flexible else "analog"
    model_output = first_output.get("destination") or \
        ("audio" if out_frames == in_frames and model_input == "audio" else "control")
    return model_input, model_output


def _model_source(model: str | None) -> Path:
    """A zoo model's file, or the starter model."""
    if not model:
        return TEMPLATES / "project" / "starter_model.py"
    from zoo import model_path, names
    if model not in names():
        raise UsageError(f"unknown zoo model {model!r}",
                         hint=f"use a TorchScript file (.jit, .pt) or one of: {', '.join(names())}")
    return model_path(model)


def new_project(project: Path, model: str | None = None, fmt: str = "vmfb", target: str = "bela",
                period: int = 128, glue: str = "auto", model_file: Path | None = None,
                input_shape: str | None = None, block: int | None = None) -> dict:
    """A new project from the starter model, a zoo model or TorchScript file (`model`) or a model
    file of one's own (`model_file`), built once. `block`: frames per model call (0: the model's
    own); None: the smallest that fits with headroom (pick_project_block)."""
    project = project.resolve()
    if project.exists() and any(project.iterdir()):
        raise UsageError(f"{project} already exists and is not empty",
                         hint="bela-iree never overwrites a project: choose a new folder")
    target_info = get_target(target)
    if glue not in ProjectConfig.CHOICES["glue"]:
        raise UsageError(f"glue = {glue!r}", hint=f"use one of: {', '.join(ProjectConfig.CHOICES['glue'])}")
    capture = Path(model) if model and model.endswith(".nam") else None
    if capture:
        if not capture.is_file():
            raise UsageError(f"{capture} does not exist")
        from .nam import read_capture
        read_capture(capture)          # a capture it cannot import is refused before the folder is made
    project.mkdir(parents=True, exist_ok=True)
    if model_file:
        shutil.copy(Path(model_file), project / MODEL_FILE)
    elif capture:   # the capture is copied in; model.py loads it (service/nam/model_file.py)
        from .nam.model_file import write_project_model
        write_project_model(capture, project, MODEL_FILE)
    elif model and Path(model).suffix in TORCHSCRIPT_SUFFIXES:   # copied in, with a model.py loading it
        spec = torchscript.file_spec(Path(model), input_shape)
        torchscript.write_model_file(Path(model), project, spec)
    else:
        shutil.copy(_model_source(model), project / MODEL_FILE)
    _, info, _ = export_cached(project / MODEL_FILE, unroll_loops=fmt == "emitc")
    if block is None:
        chosen, tried, why = pick_project_block(project / MODEL_FILE, target_info, info["block_size"])
    else:
        chosen, tried, why = block or None, [], None if block else "asked for the model's own block"
    if chosen:
        _, info, _ = export_cached(project / MODEL_FILE, unroll_loops=fmt == "emitc", block=chosen)
    model_input, model_output = default_routing(info, block_flexible=bool(chosen))
    config = ProjectConfig(target=target, format=fmt, period=chosen or period, block=chosen or 0,
                           input=model_input, output=model_output, glue=glue)
    include = f"{config.iree_runtime_dir}/include"
    on_board = absolute_on_board(board_project_dir(config.board_root, project.name))
    emitc_library = f"{on_board}/{MODEL_DIR}/{EMITC_LIBRARY}"   # the Bela IDE links from its own folder
    # IREE's headers need the allocator its library was built with; the loader follows the target
    iree_defines = "-DIREE_ALLOCATOR_SYSTEM_CTL=iree_allocator_libc_ctl"
    loader = "STATIC" if fmt == "emitc" else "SYSTEM" if target_info.arch == "armv7" else "EMBEDDED"
    # Bela's Makefile compiles C++ with -std=c++11 before these; IREE's headers need C++14
    make = [f"CPPFLAGS=-std=c++14 -I{include} {iree_defines}",
            f"CFLAGS=-I{include} {iree_defines} -DBELA_IREE_LOADER_{loader} -std=gnu11",
            f"LDFLAGS=-L{config.iree_runtime_dir}/lib",
            f"LDLIBS={f'{emitc_library} {STATIC_LOADER_LIBRARY} ' if fmt == 'emitc' else ''}"
            f"{IREE_LIBRARIES}"]
    routing = routing_context(info)
    block = info["inputs"][routing["block_input"]]["shape"] if routing["block_input"] >= 0 else [info["block_size"]]
    context = {**asdict(config), **routing, "glue_setting": config.glue, "glue": resolve_glue(config, info),
               "project": project.name, "board": target_info.board,
               "iree_version": cache.iree_version(), "make": ";".join(make), "model_block": _layout(block)[1]}
    env = _environment()
    for name in ("render.cpp", "settings.json", CONFIG, "README.md"):
        (project / name).write_text(env.get_template(f"project/{name}.j2").render(context))
    result = build_project(project).to_json()
    result["block"] = {"chosen": chosen, "tried": tried, **({"why_not": why} if why else {})}
    return result


def pick_project_block(model_file: Path, target, own_block: int) -> tuple[int | None, list[dict], str | None]:
    """The block `new` writes in bela-iree.toml (bench/blocks.py: the smallest Bela period up to
    the model's own block that it fits in with headroom, for a block-flexible model), the blocks it
    tried, and why it kept the model's own block (None chosen) if it did. Timed with the vmfb."""
    from .bench.blocks import CANDIDATES, pick_block
    from .errors import BelaIreeError
    candidates = tuple(block for block in CANDIDATES if block <= own_block)   # a longer block only adds latency
    if not candidates:
        return None, [], f"the model's own block ({own_block}) is shorter than any Bela period tried"
    with tempfile.TemporaryDirectory(prefix="bela-iree-blocks-") as tmp:
        try:
            return pick_block(model_file, CompileOptions(target, "vmfb", "llvm-cpu", variant="default"), Path(tmp),
                              candidates)
        except BelaIreeError as e:   # no runtime to count on, a model that fails: the model's own block
            return None, [], f"could not time the model at other blocks: {e.message}"
