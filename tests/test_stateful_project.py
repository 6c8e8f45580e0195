"""A generated project with a stateful model, through render() and the Bela stand-in: a sine
sweep played through lstm_amp comes out as PyTorch's output for the whole sweep at once, two model
blocks late, with nothing lost or repeated at the block joins (no clicks)."""
import numpy as np
import torch

from service.modelfile import load_model
from service.project import new_project

from .realtime import bela_include_dir, build_rt_guard, run_standin
from .test_templates import build_host_project

BLOCK = 128      # lstm_amp's own block, asked for (new would pick a shorter one on this computer)
BLOCKS = 12


def sine_sweep(frames: int, sample_rate: int = 44100) -> np.ndarray:
    """0.5 x sin of a sweep from 50 Hz to 5 kHz, exponential in frequency."""
    t = np.arange(frames) / sample_rate
    duration = frames / sample_rate
    rate = np.log(5000 / 50) / duration
    phase = 2 * np.pi * 50 * (np.exp(rate * t) - 1) / rate
    return (0.5 * np.sin(phase)).astype(np.float32)


def test_stateful_project_plays_a_sine_sweep_as_the_whole_signal_reference(tmp_path, runtime):
    project = tmp_path / "amp"
    new_project(project, "lstm_amp", "vmfb", "host", block=BLOCK)
    assert "bela_iree_model_reset(model)" in (project / "generated/model/realtime_model.h").read_text()
    program = build_host_project(project, "vmfb", str(runtime("host").folder), str(bela_include_dir()))
    sweep = sine_sweep(BLOCK * BLOCKS)
    sweep.tofile(project / "in.f32")
    guard = build_rt_guard("cc", tmp_path / "rt_guard")
    run = run_standin(program, ["in.f32", "out.f32", "1", "16"], cwd=project, guard=guard)
    assert run.returncode == 0 and "rt_guard" not in run.stderr, run.stderr[-3000:]
    played = np.fromfile(project / "out.f32", dtype=np.float32)
    with torch.no_grad():
        whole = load_model(project / "model.py").module(torch.from_numpy(sweep).reshape(1, -1)).numpy().ravel()
    delay = 2 * BLOCK   # one block to fill, one to run the model (bench's latency_samples)
    assert played.shape == sweep.shape and not played[:delay].any()
    assert np.abs(played[delay:] - whole[:-delay]).max() <= 1e-4 + 1e-4 * np.abs(whole).max()
    # each block join is as smooth as the reference there: no step a restarted state would make
    steps = np.abs(np.diff(played[delay:]))
    joins = np.arange(BLOCK - 1, steps.size, BLOCK)
    assert steps[joins].max() <= np.abs(np.diff(whole)).max() + 1e-4


def test_knob_conditioned_project_routes_block_and_knobs(tmp_path, runtime):
    """gru_knobs (INPUTS = audio, knobs): the glue hands the model its audio block and the knob values
    (analog inputs 0 and 1, read once per block: here a knob turned from 0.2 to 0.9 halfway) and
    carries the GRU's state; the output is PyTorch's for the same blocks and knobs, two blocks late."""
    project = tmp_path / "knobs"
    new_project(project, "gru_knobs", "vmfb", "host", block=BLOCK)
    render = (project / "render.cpp").read_text()
    assert "gModel.setKnob(k," in render
    config = (project / "generated/model/model_config.h").read_text()
    assert "kModelBlockInput = 0;" in config and "kModelKnobIndex[1] = { 1 };" in config
    program = build_host_project(project, "vmfb", str(runtime("host").folder), str(bela_include_dir()))
    sweep = sine_sweep(BLOCK * BLOCKS)
    sweep.tofile(project / "in.f32")
    # analog inputs 0 and 1 (4 channels, one analog frame per audio frame): knob 0 moves halfway
    knobs = np.zeros((sweep.size, 4), np.float32)
    knobs[:, 0] = np.where(np.arange(sweep.size) < sweep.size // 2, 0.2, 0.9)
    knobs[:, 1] = 0.4
    knobs.tofile(project / "analog.f32")
    guard = build_rt_guard("cc", tmp_path / "rt_guard")
    run = run_standin(program, ["in.f32", "out.f32", "1", "16", "analog.f32", "4"], cwd=project, guard=guard)
    assert run.returncode == 0 and "rt_guard" not in run.stderr, run.stderr[-3000:]
    played = np.fromfile(project / "out.f32", dtype=np.float32)
    # the glue takes the knobs when a block is full: block b runs with the knobs of its last frame
    module = load_model(project / "model.py").module
    with torch.no_grad():
        reference = np.concatenate([module(torch.from_numpy(sweep[b * BLOCK:(b + 1) * BLOCK]).reshape(1, -1),
                                           torch.from_numpy(knobs[(b + 1) * BLOCK - 1, :2]).reshape(1, 2)).numpy().ravel()
                                    for b in range(BLOCKS)])
    delay = 2 * BLOCK
    assert np.abs(played[delay:] - reference[:-delay]).max() <= 1e-4 + 1e-4 * np.abs(reference).max()
    with torch.no_grad():   # the knobs matter: with both at 0 the output differs
        unturned = load_model(project / "model.py").module(torch.from_numpy(sweep).reshape(1, -1),
                                                            torch.zeros(1, 2)).numpy().ravel()
    assert np.abs(unturned - reference).max() > 0.01


def test_control_model_of_knobs_and_noise_makes_a_project(tmp_path):
    """mdrnn_control (INPUTS = knobs; two noise draws; OUTPUTS = analog): no block input, called once
    per audio block, its knobs from analog inputs, its draws filled by the glue, its output on the
    analog outputs."""
    project = tmp_path / "gestures"
    new_project(project, "mdrnn_control", "vmfb", "host")
    config = (project / "generated/model/model_config.h").read_text()
    assert "kModelBlockInput = -1;" in config and "kModelInputFrames = 128;" in config
    assert "kModelNoiseIndex[2] = { 1, 2 };" in config and "kModelKnobCounts[1] = { 3 };" in config
    render = (project / "render.cpp").read_text()
    assert "gModel.setKnob(k," in render and "analogWrite(context, n, c, values[c]);" in render
