"""`bela-iree new` and `build`: the templates render for each kind of model routing, target and format;
the generated C++ has the real-time structure; user files are never touched."""
import hashlib
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from service.modelfile import load_model
from service.layout import USER_FILES
from service.project import ProjectConfig, new_project
from service.runtimes.emitc import library_query_name

from .conftest import cli, cli_json
from .realtime import QEMU_ARM, STANDIN_SOURCE, bela_include_dir, build_rt_guard, run_standin


@pytest.fixture(scope="module")
def guard(tmp_path_factory):
    """tests/rt_guard's interposer for this computer's programs."""
    return build_rt_guard("cc", tmp_path_factory.mktemp("rt_guard"))


@pytest.fixture(scope="module")
def armhf_guard(tmp_path_factory):
    """tests/rt_guard's interposer for Bela's armhf programs (under qemu-arm)."""
    return build_rt_guard(ARMHF_CC, tmp_path_factory.mktemp("rt_guard_armhf"))


def render_body(render_cpp: str) -> str:
    start = render_cpp.index("void render(")
    return render_cpp[start:render_cpp.index("\nvoid cleanup(", start)]


def method(header: str, name: str) -> str:
    """The body of RealtimeModel's method `name` (one tab in, ends at the closing tab brace)."""
    start = re.search(rf"^\t[^\t\n][^\n]*\b{name}\(", header, re.M).start()
    return header[start:header.index("\n\t}\n", start)]


FORBIDDEN_IN_AUDIO_THREAD = re.compile(r"\b(malloc|calloc|realloc|free|new|delete|lock|mutex|printf|fprintf|"
                                       r"usleep|sleep|wait|bela_iree_model_run|std::vector|assign|push_back)\b")


# the glue follows the model's routing, not its layers: one zoo model of each routing (audio block
# to audio, audio to control values, state with knobs, stateful amp, knobs and noise to analog)
ROUTINGS = ("basic_mlp", "log_spectrum", "gru_knobs", "lstm_amp", "mdrnn_control")


@pytest.mark.slow
@pytest.mark.parametrize("model", ROUTINGS)
def test_each_routing_makes_a_real_time_safe_project(tmp_path, model):
    project = tmp_path / model
    result = new_project(project, model, "vmfb", "gem", block=0)   # its own block (tests/test_blocks.py: new's pick)
    assert sorted(p.name for p in project.iterdir()) == sorted([*USER_FILES, "generated"])
    render = (project / "render.cpp").read_text()
    for part in ("bool setup(BelaContext* context, void* userData)", "void render(BelaContext* context, void* userData)",
                 "void cleanup(BelaContext* context, void* userData)", '#include "generated/model/realtime_model.h"'):
        assert part in render
    assert not FORBIDDEN_IN_AUDIO_THREAD.search(render_body(render))
    glue = (project / "generated/model/realtime_model.h").read_text()
    for name in ("advanceInput", "advanceOutput", "output", "input"):
        assert not FORBIDDEN_IN_AUDIO_THREAD.search(method(glue, name)), name   # render() calls these
    assert "Bela_createAuxiliaryTask" in method(glue, "setup") and "loadModel(" in method(glue, "setup")
    assert "bela_iree_model_load" in method(glue, "loadModel")
    assert "bela_iree_model_reset" in method(glue, "loadModel")   # a stateful model starts from its starting state
    assert "overruns_.fetch_add" in method(glue, "advanceInput") and "Bela_scheduleAuxiliaryTask" in method(glue, "advanceInput")
    assert "runBlock(" in method(glue, "infer") and "bela_iree_model_run(model)" in method(glue, "runModel")
    assert "bela_iree_model_free" in method(glue, "cleanup") and "bela_iree_model_free" in method(glue, "watch")
    assert 'glue = "auto"' in (project / "bela-iree.toml").read_text()   # resolved to the auxiliary task
    assert 'kBelaIreeGlue[] = "aux_task"' in glue and "bela_iree_model_free" not in method(glue, "runBlock")
    config = (project / "generated/model/model_config.h").read_text()
    # the block render() fills: the first audio or analog input (a model of knobs only has none)
    blocks = [i for i in result["inputs"] if i["role"] == "input" and i.get("source", "audio") in ("audio", "analog")]
    if blocks:
        assert f"kModelInputCount = {int(__import__('math').prod(blocks[0]['shape']))};" in config
    else:
        assert "kModelBlockInput = -1;" in config
    settings = json.loads((project / "settings.json").read_text())
    period = tomllib.loads((project / "bela-iree.toml").read_text())["period"]   # `new` picks it for a block-flexible model
    assert settings["CLArgs"]["-p"] == str(period) and "-liree_runtime_unified" in settings["CLArgs"]["make"]
    assert "-I/root/Bela/libraries/iree/include" in settings["CLArgs"]["make"]
    assert "-DBELA_IREE_LOADER_EMBEDDED" in settings["CLArgs"]["make"]   # aarch64 (bela would be SYSTEM)


def test_routing_follows_the_model(tmp_path):
    new_project(tmp_path / "audio", "basic_mlp", "vmfb", "bela")
    assert 'output = "audio"' in (tmp_path / "audio/bela-iree.toml").read_text()
    assert "-DBELA_IREE_LOADER_SYSTEM" in (tmp_path / "audio/settings.json").read_text()
    assert "audioWrite" in (tmp_path / "audio/render.cpp").read_text()
    new_project(tmp_path / "classifier", "simple_conv_1d", "vmfb", "bbai64")
    render = (tmp_path / "classifier/render.cpp").read_text()
    assert 'output = "control"' in (tmp_path / "classifier/bela-iree.toml").read_text()
    assert "gModel.latest()" in render and "audioWrite" not in render
    new_project(tmp_path / "gesture", "mdrnn", "vmfb", "gem")
    assert "analogRead" in (tmp_path / "gesture/render.cpp").read_text()
    new_project(tmp_path / "noise", "variational_encoder", "vmfb", "gem")
    config = (tmp_path / "noise/generated/model/model_config.h").read_text()
    assert "kModelNoiseInputs = 1;" in config and "{ 128 }" in config and "{ true }" in config
    glue = (tmp_path / "noise/generated/model/realtime_model.h").read_text()
    assert "options.input_count = 2;" in glue


def test_emitc_project_links_the_module_compiled_here_for_the_board(tmp_path):
    new_project(tmp_path / "emitc", "single_mm", "emitc", "bela")
    model = tmp_path / "emitc/generated/model"
    # the board compiles the glue only: the module (19 MB of C for single_mm) comes compiled, for armv7
    assert not list(model.glob("module.c")) and not list(model.glob("emitc_module.*"))
    assert sorted(p.name for p in model.glob("*.c")) == ["bela_iree_model.c"]
    members = subprocess.run(["arm-linux-gnueabihf-ar", "t", str(model / "libbela_iree_module.a")],
                             capture_output=True, text=True, check=True).stdout.split()
    # the kernels' NEON routines (multiply-add, floor, max) come with them under private names (arm_fma.py)
    assert members == ["module.o", "kernels.o", "bela_iree_arm_fmaf.o", "bela_iree_arm_floor_max.o"]
    subprocess.run(["arm-linux-gnueabihf-ar", "x", str(model / "libbela_iree_module.a"), "module.o"],
                   cwd=tmp_path, check=True)
    assert (tmp_path / "module.o").read_bytes()[18:20] == b"\x28\x00"   # EM_ARM
    glue = (model / "realtime_model.h").read_text()
    assert "options.emitc_module_create = module_create;" in glue
    assert re.search(r"options.static_library_query = [\w$]+_library_query;", glue)
    make = json.loads((tmp_path / "emitc/settings.json").read_text())["CLArgs"]["make"]
    assert "/root/Bela/projects/emitc/generated/model/libbela_iree_module.a" in make
    assert "-DBELA_IREE_LOADER_STATIC" in make


def test_new_refuses_to_overwrite_a_project(tmp_path):
    project = tmp_path / "taken"
    project.mkdir()
    (project / "render.cpp").write_text("// mine\n")
    data, result = cli_json("new", str(project), "--model", "single_mm", check=False)
    assert result.returncode == 1 and "already exists" in data["error"]["message"]
    assert (project / "render.cpp").read_text() == "// mine\n"


def test_build_never_touches_user_files_and_keeps_the_last_good_model(tmp_path):
    project = tmp_path / "mine"
    cli("new", str(project), "--target", "gem")
    (project / "render.cpp").write_text((project / "render.cpp").read_text() + "\n// my own change\n")
    before = {name: hashlib.sha256((project / name).read_bytes()).hexdigest() for name in USER_FILES}
    data, _ = cli_json("build", str(project))
    assert data["artifacts"] == [str(project / "generated/model/model.vmfb")]
    # the build record the running program's watcher swaps modules in by (no build id outside serve)
    record = json.loads((project / "generated/model/build.json").read_text())
    assert record == {"build": None, "sha256": hashlib.sha256((project / "generated/model/model.vmfb").read_bytes()).hexdigest()}
    after = {name: hashlib.sha256((project / name).read_bytes()).hexdigest() for name in USER_FILES}
    assert before == after
    good = (project / "generated/model/model.vmfb").read_bytes()
    model = project / "model.py"
    model.write_text(model.read_text().replace("def model():", "def model("))
    data, result = cli_json("build", str(project), check=False)
    assert result.returncode == 1 and data["error"]["file"].endswith("model.py")
    assert (project / "generated/model/model.vmfb").read_bytes() == good
    assert not [p for p in (project / "generated").iterdir() if p.name.startswith(".")]


def run_against_pytorch(program: Path, compiled: dict, model_path: str, tmp_path: Path) -> None:
    """Runs `program` (tests/run_model.c) on the exported example input and checks its output
    against PyTorch's with the foundation's tolerance."""
    folder = Path(compiled["artifacts"][0]).parent
    example = next(iter(np.load(folder / "inputs.npz").values())).astype(np.float32)
    expected = np.load(folder / "expected.npy").ravel()
    example.tofile(tmp_path / "input.bin")
    run = subprocess.run([str(program), "--input", str(tmp_path / "input.bin"), "--output", str(tmp_path / "out.bin"),
                          "--output-count", str(expected.size), model_path, "10", *map(str, example.shape)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "runs 10 failures 0" in run.stdout
    got = np.fromfile(tmp_path / "out.bin", dtype=np.float32)
    assert np.abs(got - expected).max() <= 1e-4 + 1e-4 * np.abs(expected).max()


def test_runtime_runs_both_back_ends_and_a_generated_project_compiles_against_a_real_iree_runtime(
        tmp_path, runtime, guard):
    runtime_dir = str(runtime("host").folder)   # `bela-iree runtime build --target host`
    root = Path(__file__).parents[1] / "runtime"
    make = ["make", "-C", str(root), f"IREE_RUNTIME_DIR={runtime_dir}", f"BUILD={tmp_path / 'build'}"]
    # bytecode back end: a .vmfb from the file system (log_spectrum: several dispatches, libm calls)
    compiled = cli_json("compile", "log_spectrum", "--target", "host", "--out", str(tmp_path / "vmfb"))[0]
    subprocess.run([*make, "test-program"], check=True)
    run_against_pytorch(tmp_path / "build/run_model", compiled, compiled["artifacts"][0], tmp_path)
    # EmitC back end: module.c and the static kernels linked into the program
    compiled = cli_json("compile", "log_spectrum", "--target", "host", "--format", "emitc",
                        "--out", str(tmp_path / "emitc"))[0]
    folder = tmp_path / "emitc"
    subprocess.run([*make, "test-program-emitc", f"EMITC_DIR={folder}",
                    f"EMITC_QUERY={library_query_name(folder / 'kernels.h')}"], check=True)
    run_against_pytorch(tmp_path / "build/run_emitc", compiled, "-", tmp_path)
    # with Bela's headers, generated projects run for real: render.cpp and the glue built against
    # Bela.h and the runtime, driven block by block by tests/bela_standin under tests/rt_guard
    for fmt in ("vmfb", "emitc"):
        run_project_through_render(tmp_path / f"run-{fmt}", fmt, runtime_dir, str(bela_include_dir()), guard)


# single_mm maps a block of MODEL_FRAMES samples to a block as long: audio in, audio out
MODEL_FRAMES = 1024
MODEL_BLOCKS = 5


def write_test_signal(project: Path, channels: int = 1) -> np.ndarray:
    """in.f32 for the stand-in: MODEL_BLOCKS model blocks of a random signal on the first input
    channel (the one the model reads), other noise on any other; returns the first channel."""
    rng = np.random.default_rng(0)
    signal = rng.uniform(-1, 1, MODEL_FRAMES * MODEL_BLOCKS).astype(np.float32)
    frames = np.empty((signal.size, channels), np.float32)
    frames[:, 0] = signal
    frames[:, 1:] = rng.uniform(-1, 1, (signal.size, channels - 1))
    frames.tofile(project / "in.f32")
    return signal


def assert_plays_the_model(project: Path, signal: np.ndarray, channels: int = 1) -> None:
    """out.f32 (interleaved, `channels` channels) plays, on every channel, the output PyTorch gives
    for each model block of `signal`, two blocks late (one to fill a block, one to run the model)."""
    loaded = load_model(project / "model.py")
    blocks = signal.size // MODEL_FRAMES
    with torch.no_grad():
        outputs = [loaded.module(torch.from_numpy(signal[i * MODEL_FRAMES:(i + 1) * MODEL_FRAMES])
                                 .reshape(1, MODEL_FRAMES)).numpy().ravel() for i in range(blocks - 2)]
    expected = np.concatenate([np.zeros(2 * MODEL_FRAMES, np.float32), *outputs])
    played = np.fromfile(project / "out.f32", dtype=np.float32)
    assert played.shape == (expected.size * channels,)
    for channel in range(channels):
        got = played[channel::channels]
        assert np.abs(got - expected).max() <= 1e-4 + 1e-4 * np.abs(expected).max(), channel


def run_project_through_render(project: Path, fmt: str, runtime_dir: str, bela_include: str, guard: Path) -> None:
    """A single_mm project for this computer, built like the Bela IDE builds it (its C and C++
    files, Bela.h, the runtime), fed 16-frame blocks under the rt_guard interposer (render() makes
    no call it must not): its audio out is the model's output for each 1024-frame block, two
    blocks later (one to fill a block, one to run the model)."""
    new_project(project, "single_mm", fmt, "host")
    program = build_host_project(project, fmt, runtime_dir, bela_include)
    signal = write_test_signal(project)
    run = run_standin(program, ["in.f32", "out.f32", "1", "16"], cwd=project, guard=guard)
    assert run.returncode == 0, (run.returncode, run.stderr)
    assert "rt_guard" not in run.stderr
    assert_plays_the_model(project, signal)


def build_host_project(project: Path, fmt: str, runtime_dir: str, bela_include: str) -> Path:
    """A project made for this computer, built with the Bela stand-in for Bela's core; the program."""
    model = project / "generated/model"
    flags = ["-O2", "-I", bela_include, "-I", str(project), "-I", str(model), "-I", f"{runtime_dir}/include",
             "-DIREE_ALLOCATOR_SYSTEM_CTL=iree_allocator_libc_ctl",
             "-DBELA_IREE_LOADER_STATIC" if fmt == "emitc" else "-DBELA_IREE_LOADER_EMBEDDED"]
    objects = []
    for source in sorted(model.glob("*.c")):
        objects.append(str(project / f"{source.stem}.o"))
        subprocess.run(["cc", "-std=gnu11", "-w", *flags, "-c", str(source), "-o", objects[-1]], check=True)
    if fmt == "emitc":   # the module and its kernels, compiled by `bela-iree build`
        objects += [str(model / "libbela_iree_module.a"),
                    f"{runtime_dir}/lib/libiree_hal_local_loaders_static_library_loader.a"]
    program = project / "standin"
    subprocess.run(["c++", "-std=c++17", *flags, str(project / "render.cpp"),
                    str(STANDIN_SOURCE), *objects, "-L", f"{runtime_dir}/lib",
                    "-liree_modules_hal_inline_inline", "-liree_modules_hal_loader_loader",
                    "-liree_hal_utils_caching_allocator", "-liree_runtime_unified", "-lflatcc_parsing", "-lpthread",
                    "-ldl", "-lm", "-o", str(program)], check=True)
    return program


# What Bela's Makefile puts before a project's own flags for every .c and .cpp file it finds
# (DEFAULT_COMMON_FLAGS without Xenomai's, then DEFAULT_CFLAGS' and DEFAULT_CPPFLAGS' standards).
# C++ is C++11 unless the project's CPPFLAGS, which come after, name another standard.
BELA_COMMON_FLAGS = ["-O3", "-march=armv7-a", "-mtune=cortex-a8", "-mfloat-abi=hard", "-mfpu=neon",
                     "-ftree-vectorize", "-ffast-math", "-DNDEBUG"]
BELA_C_FLAGS = [*BELA_COMMON_FLAGS, "-std=gnu11"]
BELA_CPP_FLAGS = [*BELA_COMMON_FLAGS, "-std=c++11"]
ARMHF_CC, ARMHF_CXX = "arm-linux-gnueabihf-gcc", "arm-linux-gnueabihf-g++"


def make_variables(project: Path, runtime_dir: Path) -> dict[str, list[str]]:
    """settings.json's make variables ("CPPFLAGS=...;CFLAGS=...;..."), as argument lists, with the
    board's runtime folder (/root/Bela/libraries/iree) replaced by runtime_dir, the project's folder
    on the board by the project, and nothing else."""
    make = json.loads((project / "settings.json").read_text())["CLArgs"]["make"]
    board_dirs = {ProjectConfig().iree_runtime_dir: runtime_dir, f"/root/Bela/projects/{project.name}": project}
    variables = {}
    for assignment in make.split(";"):
        name, value = assignment.split("=", 1)
        for board_dir, here in board_dirs.items():
            value = value.replace(board_dir, str(here))
        variables[name] = shlex.split(value)
    assert set(variables) == {"CPPFLAGS", "CFLAGS", "LDFLAGS", "LDLIBS"}, make
    assert "/root/Bela" not in " ".join(sum(variables.values(), [])), make   # nothing else on the board
    return variables


def compile_checked(argv: list) -> None:
    """Run a compiler or linker; on failure, its command line and its first errors."""
    argv = list(map(str, argv))
    result = subprocess.run(argv, capture_output=True, text=True)
    returncode, errors = result.returncode, [line for line in result.stderr.splitlines() if "error" in line]
    assert returncode == 0, f"{shlex.join(argv)}\nfailed ({returncode}):\n" + "\n".join(errors[:8] or [result.stderr[-3000:]])


@pytest.mark.parametrize("fmt", ["vmfb", "emitc"])
def test_a_generated_bela_project_runs_on_emulated_armv7(tmp_path, runtime, armhf_guard, fmt):
    """A --target bela project, built as the Bela IDE builds it (settings.json's make variables,
    with the armhf cross compilers and the bela runtime install in place of the board's), runs on
    a Bela's CPU under qemu-arm with the armhf glibc, under rt_guard, and plays the model's output.
    EmitC: the module comes compiled (libbela_iree_module.a); the board compiles the glue only."""
    project = tmp_path / "bela-project"
    new_project(project, "single_mm", fmt, "bela")
    install = runtime("bela")
    assert "-lbela_iree_compat" in make_variables(project, install.folder)["LDLIBS"]   # glibc functions old Bela images lack
    program = build_bela_project(project, install.folder, tmp_path / "build")

    settings = json.loads((project / "settings.json").read_text())
    period = int(settings["CLArgs"]["-p"])   # the block size the IDE runs it with
    signal = write_test_signal(project, channels=2)
    # the glue opens generated/model/model.vmfb relative to the project folder, as on the board
    run = run_standin(program, ["in.f32", "out.f32", "2", str(period)], cwd=project, guard=armhf_guard,
                      prefix=QEMU_ARM, timeout=300)
    assert run.returncode == 0, (run.returncode, run.stderr[-3000:])
    assert "rt_guard" not in run.stderr
    assert_plays_the_model(project, signal, channels=2)


def build_bela_project(project: Path, runtime_dir: Path, build: Path) -> Path:
    """A --target bela project built as the Bela IDE builds it (settings.json's make variables, with
    the armhf cross compilers and the bela runtime install in place of the board's), with the Bela
    stand-in for Bela's core; the program (run it under QEMU_ARM in the project folder)."""
    make = make_variables(project, runtime_dir)
    build.mkdir(parents=True, exist_ok=True)
    includes = ["-I", project, "-I", bela_include_dir()]   # Bela's INCLUDES: the project, then Bela's include/
    objects = []
    c_sources = sorted(project.rglob("*.c"))
    cpp_sources = sorted(project.rglob("*.cpp"))
    assert [p.relative_to(project) for p in c_sources] == [Path("generated/model/bela_iree_model.c")]
    assert [p.relative_to(project) for p in cpp_sources] == [Path("render.cpp")]
    for source in c_sources:
        objects.append(build / f"{source.stem}.o")
        compile_checked([ARMHF_CC, *includes, *BELA_C_FLAGS, "-c", "-o", objects[-1], source, *make["CFLAGS"]])
    for source in [*cpp_sources, STANDIN_SOURCE]:   # the stand-in is Bela's core, built the same way
        objects.append(build / f"{source.stem}.o")
        compile_checked([ARMHF_CXX, *includes, *BELA_CPP_FLAGS, "-c", "-o", objects[-1], source, *make["CPPFLAGS"]])
    program = build / project.name
    compile_checked([ARMHF_CXX, *make["LDFLAGS"], "-pthread", "-o", program, *objects, *make["LDLIBS"]])
    return program


def test_render_glue_needs_the_model_block_to_be_the_period(tmp_path):
    """glue = "render" calls the model once per Bela block: a build whose model block is not the
    period is refused, saying both numbers and the ways out; glue = "aux_task" takes any block."""
    from service.errors import UsageError
    from service.project import build_project
    project = tmp_path / "mlp"
    new_project(project, "single_mm", "vmfb", "host", period=16, glue="aux_task")
    config = project / "bela-iree.toml"
    config.write_text(config.read_text().replace('glue = "aux_task"', 'glue = "render"'))
    with pytest.raises(UsageError) as refused:
        build_project(project)
    block = json.loads((project / "generated/model/build.json").read_text())   # the last good build stays
    assert "runs the model once per Bela block" in str(refused.value) and "period = 16" in str(refused.value)
    assert 'glue = "aux_task"' in refused.value.hint and block["sha256"]
