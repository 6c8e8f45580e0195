"""Real-time safety checked by running: small Bela projects built with the Bela stand-in, run under
tests/rt_guard's interposer. render() that allocates, locks, sleeps or prints is stopped; setup()
and auxiliary tasks (their own threads) may do all of that. Natively and for armhf under qemu-arm."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from .realtime import QEMU_ARM, RT_GUARD_EXIT, build_rt_guard, build_standin, run_standin

CHANNELS, FRAMES = 2, 8
BLOCK = CHANNELS * FRAMES

PASSTHROUGH = r"""
#include <Bela.h>

bool setup(BelaContext* context, void* userData) { return true; }

void render(BelaContext* context, void* userData)
{
	for(unsigned int n = 0; n < context->audioFrames * context->audioOutChannels; ++n)
		context->audioOut[n] = context->audioIn[n];
	rt_printf("rendered a block starting at %.1f\n", context->audioIn[0]);  // real-time safe on Bela
}

void cleanup(BelaContext* context, void* userData) {}
"""

# render() bodies that must be stopped, and the function rt_guard names for each. Results go to
# globals so that the compiler cannot leave the calls out.
UNSAFE_RENDERS = {
    "vector-growing": ("#include <vector>\nstd::vector<float> gHistory;",
                       "gHistory.push_back(context->audioIn[0]);", "operator new"),
    "new-array": ("float* gScratch;", "gScratch = new float[16];", "operator new[]"),
    "malloc": ("#include <cstdlib>\nvoid* gScratch;", "gScratch = malloc(16 * sizeof(float));", "malloc"),
    "mutex": ("#include <mutex>\nstd::mutex gMutex;\nfloat gLevel;",
              "std::lock_guard<std::mutex> lock(gMutex);\n\tgLevel = context->audioIn[0];", "pthread_mutex_lock"),
    "printf": ("#include <cstdio>", "printf(\"level %f\\n\", context->audioIn[0]);", "printf"),
    "usleep": ("#include <unistd.h>", "usleep(10);", "usleep"),
}


def unsafe_render(case: str) -> str:
    globals_, body, _ = UNSAFE_RENDERS[case]
    return f"""
#include <Bela.h>
{globals_}

bool setup(BelaContext* context, void* userData) {{ return true; }}

void render(BelaContext* context, void* userData)
{{
	for(unsigned int n = 0; n < context->audioFrames * context->audioOutChannels; ++n)
		context->audioOut[n] = context->audioIn[n];
	{body}
}}

void cleanup(BelaContext* context, void* userData) {{}}
"""


# setup() allocates and prints; render() hands each block to an auxiliary task, which allocates,
# sleeps, prints and sums it; render() plays the sum of the block before (the task has finished
# by the next render(), however slow: the stand-in waits for it, so this output is deterministic).
AUXILIARY_TASK = r"""
#include <Bela.h>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <thread>
#include <unistd.h>
#include <vector>

static std::vector<float> gBlock;
static float gLastSum = 0.f;
static int gRuns = 0;
static std::thread::id gAudioThread;
static AuxiliaryTask gTask;

static void sumBlock(void*)
{
	std::vector<float> copy(gBlock);  // allocates: fine outside render()
	usleep(20000);                    // a slow model: the stand-in waits for it
	gLastSum = std::accumulate(copy.begin(), copy.end(), 0.f);
	printf("task run %d on %s\n", ++gRuns,
		std::this_thread::get_id() == gAudioThread ? "the audio thread" : "its own thread");
}

bool setup(BelaContext* context, void* userData)
{
	gBlock.assign(context->audioFrames * context->audioInChannels, 0.f);
	printf("setup: %zu samples per block\n", gBlock.size());
	gAudioThread = std::this_thread::get_id();  // the stand-in's main thread runs render() too
	gTask = Bela_createAuxiliaryTask(sumBlock, BELA_AUDIO_PRIORITY - 10, "sum-block", nullptr);
	return gTask != nullptr;
}

void render(BelaContext* context, void* userData)
{
	for(unsigned int n = 0; n < context->audioFrames * context->audioOutChannels; ++n)
		context->audioOut[n] = gLastSum;
	memcpy(gBlock.data(), context->audioIn, gBlock.size() * sizeof(float));
	Bela_scheduleAuxiliaryTask(gTask);
}

void cleanup(BelaContext* context, void* userData) {}
"""


@pytest.fixture(scope="module")
def guard(tmp_path_factory):
    return build_rt_guard("cc", tmp_path_factory.mktemp("rt_guard"))


@pytest.fixture(scope="module")
def armhf_guard(tmp_path_factory):
    return build_rt_guard("arm-linux-gnueabihf-gcc", tmp_path_factory.mktemp("rt_guard_armhf"))


def project(tmp_path, render_cpp: str, cxx: str = "c++"):
    """The project built with the stand-in, and an input file of 4 blocks (whole numbers, so sums are exact)."""
    (tmp_path / "render.cpp").write_text(render_cpp)
    program = build_standin(cxx, [tmp_path / "render.cpp"], tmp_path / "standin")
    signal = np.arange(4 * BLOCK, dtype=np.float32) - 20
    signal.tofile(tmp_path / "in.f32")
    return program, signal


ARGS = ["in.f32", "out.f32", str(CHANNELS), str(FRAMES)]


def test_safe_render_runs_under_the_guard(tmp_path, guard):
    program, signal = project(tmp_path, PASSTHROUGH)
    run = run_standin(program, ARGS, cwd=tmp_path, guard=guard)
    assert run.returncode == 0, run.stderr
    assert "rt_guard" not in run.stderr
    np.testing.assert_array_equal(np.fromfile(tmp_path / "out.f32", dtype=np.float32), signal)
    # rt_printf from render() is printed (after render() returns), once per block
    assert run.stdout.splitlines() == [f"rendered a block starting at {signal[b * BLOCK]:.1f}" for b in range(4)]


@pytest.mark.parametrize("case", list(UNSAFE_RENDERS))
def test_unsafe_render_is_stopped(tmp_path, guard, case):
    program, signal = project(tmp_path, unsafe_render(case))
    # without the guard the program runs: it is the guard that stops it
    free = run_standin(program, ARGS, cwd=tmp_path, guard=None)
    assert free.returncode == 0, free.stderr
    np.testing.assert_array_equal(np.fromfile(tmp_path / "out.f32", dtype=np.float32), signal)
    (tmp_path / "out.f32").unlink()
    run = run_standin(program, ARGS, cwd=tmp_path, guard=guard)
    assert run.returncode == RT_GUARD_EXIT, (run.returncode, run.stderr)
    assert run.stderr.splitlines() == [f"rt_guard: {UNSAFE_RENDERS[case][2]} called inside render()"]
    assert not (tmp_path / "out.f32").exists()   # stopped in the first render(), before writing anything


def test_setup_and_auxiliary_task_may_allocate_and_print(tmp_path, guard):
    program, signal = project(tmp_path, AUXILIARY_TASK)
    run = run_standin(program, ARGS, cwd=tmp_path, guard=guard)
    assert run.returncode == 0, run.stderr
    assert "rt_guard" not in run.stderr
    assert run.stdout.splitlines() == [f"setup: {BLOCK} samples per block",
                                       *(f"task run {n} on its own thread" for n in range(1, 5))]
    # each block plays the sum of the block before, which the task computed in time
    sums = [0.0, *(signal[b * BLOCK:(b + 1) * BLOCK].sum() for b in range(3))]
    expected = np.repeat(np.array(sums, dtype=np.float32), BLOCK)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "out.f32", dtype=np.float32), expected)


def test_guard_on_armhf_under_qemu(tmp_path, armhf_guard):
    safe, unsafe = tmp_path / "safe", tmp_path / "unsafe"
    safe.mkdir(), unsafe.mkdir()
    program, signal = project(safe, PASSTHROUGH, cxx="arm-linux-gnueabihf-g++")
    run = run_standin(program, ARGS, cwd=safe, guard=armhf_guard, prefix=QEMU_ARM)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""   # LD_PRELOAD reached the guest's loader only (qemu's own would complain)
    np.testing.assert_array_equal(np.fromfile(safe / "out.f32", dtype=np.float32), signal)

    program, _ = project(unsafe, unsafe_render("vector-growing"), cxx="arm-linux-gnueabihf-g++")
    assert run_standin(program, ARGS, cwd=unsafe, guard=None, prefix=QEMU_ARM).returncode == 0
    run = run_standin(program, ARGS, cwd=unsafe, guard=armhf_guard, prefix=QEMU_ARM)
    assert run.returncode == RT_GUARD_EXIT, (run.returncode, run.stderr)
    assert run.stderr.splitlines() == ["rt_guard: operator new called inside render()"]


# ---- glue = "render": the model itself runs inside render() ----------------------------------

RENDER_GLUE_BLOCKS = 1100   # more than 1000 blocks of Bela's 16-frame period, the first included
RENDER_GLUE_MODELS = {"starter": "project_templates/project/starter_model.py", "lstm_amp": "zoo/models/lstm_amp.py"}


def at_bela_period(source: Path, folder: Path, frames: int = 16) -> Path:
    """A copy of a model file exported at `frames` per block, audio in and audio out."""
    text = re.sub(r"^BLOCK_SIZE = \d+$", f"BLOCK_SIZE = {frames}", source.read_text(), count=1, flags=re.M)
    if "\nINPUTS" not in text:
        text += '\nINPUTS = ("audio",)\nOUTPUTS = ("audio",)\n'
    path = folder / f"{source.stem}_{frames}.py"
    path.write_text(text)
    return path


def syscalls_inside_render(strace: str) -> tuple[int, list[str]]:
    """(render() calls seen, system calls made inside them), from qemu-arm -strace with rt_guard's
    RT_GUARD_MARKERS: a getppid() just before and just after each render()."""
    windows, inside, calls = 0, False, []
    for line in strace.splitlines():
        match = re.match(r"^\d+ (\w+)\(", line)
        if not match:
            continue
        if match.group(1) == "getppid":
            inside = not inside
            windows += inside
        elif inside:
            calls.append(line[:200])
    return windows, calls


@pytest.mark.parametrize("target", ["bela", "host"])
@pytest.mark.parametrize("model", list(RENDER_GLUE_MODELS))
def test_render_glue_runs_the_model_in_render_with_no_allocation_lock_syscall_or_page_fault(
        tmp_path, runtime, guard, armhf_guard, model, target):
    """glue = "render": over 1100 blocks of 16 frames, the first included, render() (which runs the
    model) allocates, frees, locks, sleeps, prints and calls no libc system-call wrapper (rt_guard)
    and touches no page of the program's memory for the first time (RT_GUARD_FIRST_TOUCH). On an
    emulated Cortex-A8 it makes no system call at all either (qemu-arm -strace, cut at rt_guard's
    markers); natively it takes no page fault at all (RT_GUARD_PAGE_FAULTS: under qemu the thread's
    count also has the emulator's own, translating the code render() runs the first time, in the
    first block only). The output is PyTorch's for the same signal with no delay."""
    from service.modelfile import load_model
    from service.project import new_project

    from .realtime import QEMU_ARM
    from .realtime import bela_include_dir
    from .test_templates import build_bela_project, build_host_project

    project = tmp_path / model
    source = at_bela_period(Path(__file__).resolve().parents[1] / RENDER_GLUE_MODELS[model], tmp_path)
    new_project(project, target=target, period=16, glue="render", model_file=source)
    header = (project / "generated/model/realtime_model.h").read_text()
    assert 'glue "render"' in header and "latency_samples 0" in header
    if target == "bela":
        program = build_bela_project(project, runtime("bela").folder, tmp_path / "build")
        options = {"prefix": [*QEMU_ARM, "-strace"], "guard": armhf_guard,
                   "guard_options": {"RT_GUARD_FIRST_TOUCH": "1", "RT_GUARD_MARKERS": "1"}}
    else:
        program = build_host_project(project, "vmfb", str(runtime("host").folder), str(bela_include_dir()))
        options = {"guard": guard, "guard_options": {"RT_GUARD_FIRST_TOUCH": "1", "RT_GUARD_PAGE_FAULTS": "1"}}
    t = np.arange(RENDER_GLUE_BLOCKS * 16)
    signal = (0.5 * np.sin(2 * np.pi * 220 * t / 44100)).astype(np.float32)
    signal.tofile(project / "in.f32")
    run = run_standin(program, ["in.f32", "out.f32", "1", "16"], cwd=project, timeout=600, **options)
    assert run.returncode == 0, (run.returncode, [line for line in run.stderr.splitlines() if "rt_guard" in line],
                                 run.stderr[-2000:])
    if target == "bela":
        windows, calls = syscalls_inside_render(run.stderr)
        assert windows == RENDER_GLUE_BLOCKS and calls == [], calls[:20]
    status = json.loads((project / "bela-iree-status.json").read_text())
    assert status["glue"] == "render" and status["latency_samples"] == 0 and status["running"] is False
    played = np.fromfile(project / "out.f32", dtype=np.float32)
    with torch.no_grad():
        module = load_model(project / "model.py").module
        reference = np.concatenate([module(torch.from_numpy(signal[b * 16:(b + 1) * 16]).reshape(1, 16)).numpy().ravel()
                                    for b in range(RENDER_GLUE_BLOCKS)])
    assert np.abs(played - reference).max() <= 1e-4 + 1e-4 * np.abs(reference).max()   # no delay at all
