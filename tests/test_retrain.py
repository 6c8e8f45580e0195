"""The retrain loop: files a model file reads while it loads (weights.pt here) are part of the
model. Overwriting weights.pt under a real `serve` rebuilds, and the new artifact carries the new
weights; a truncated or deleted weights file fails at the line that read it, with the last good
artifact kept, and saving a whole one builds again."""
import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from service.bench.run import run_module
from service.errors import ModelFileError
from service.modelfile import load_model
from service.pipeline.targets import TARGETS
from service.watcher import ProjectWatcher

from .conftest import cli
from .service_helpers import Client, Service

BLOCK = 64
MODEL = f'''from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).parent
BLOCK_SIZE = {BLOCK}


class Mixer(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(BLOCK_SIZE, BLOCK_SIZE)

    def forward(self, x):
        return torch.tanh(self.mix(x))


def model():
    net = Mixer()
    net.mix.load_state_dict(torch.load(HERE / "weights.pt"))
    return net


example_input = torch.zeros(1, BLOCK_SIZE)
'''
LOAD_LINE = MODEL.splitlines().index('    net.mix.load_state_dict(torch.load(HERE / "weights.pt"))') + 1


def weights(seed: int) -> dict:
    torch.manual_seed(seed)
    return torch.nn.Linear(BLOCK, BLOCK).state_dict()


def carries(project: Path, state: dict, tmp_path: Path) -> float:
    """The served artifact against torch with these weights, on a random block."""
    folder = tmp_path / "artifact"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(project / "generated/model", folder)
    x = torch.rand(1, BLOCK) * 2 - 1
    np.savez(folder / "inputs.npz", x.numpy())
    linear = torch.nn.Linear(BLOCK, BLOCK)
    linear.load_state_dict(state)
    with torch.no_grad():
        wanted = torch.tanh(linear(x)).numpy()
    return float(np.abs(run_module(folder, TARGETS["host"]).reshape(wanted.shape) - wanted).max())


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "retrain"
    cli("new", str(folder), "--target", "host")
    (folder / "model.py").write_text(MODEL)
    torch.save(weights(1), folder / "weights.pt")
    return folder


async def test_overwriting_weights_rebuilds_and_a_broken_file_keeps_the_last_good_artifact(project, tmp_path):
    service = Service(project, "--export-timeout", "60")
    try:
        client = await Client.connect(service)
        first = await client.build_finished()
        assert first["state"] == "done", first
        assert carries(project, weights(1), tmp_path) <= 1e-5

        mark = len(client.messages)
        torch.save(weights(2), project / "weights.pt")   # as a notebook does after training
        queued = await client.wait_for(lambda m: m["type"] == "build" and m["state"] == "queued", 30, mark)
        assert queued["reason"] == "weights.pt changed"
        assert (await client.build_finished(after=mark))["state"] == "done"
        assert carries(project, weights(2), tmp_path) <= 1e-5
        good = (project / "generated/model/model.vmfb").read_bytes()

        mark = len(client.messages)
        (project / "weights.pt").write_bytes((project / "weights.pt").read_bytes())   # the same weights again
        unchanged = await client.wait_for(lambda m: m["type"] == "unchanged", 30, mark)
        assert unchanged["files"] == ["weights.pt"]

        whole = (project / "weights.pt").read_bytes()
        for broken, words in ((whole[:len(whole) // 2], "read weights.pt while"), (None, "weights.pt (missing)")):
            mark = len(client.messages)
            if broken is None:
                (project / "weights.pt").unlink()
            else:
                (project / "weights.pt").write_bytes(broken)   # half-written
            failed = await client.build_finished(after=mark)
            error = failed["error"]
            assert failed["state"] == "failed" and error["stage"] == "export", failed
            assert Path(error["file"]).name == "model.py" and error["line"] == LOAD_LINE, error
            assert words in error["hint"], error
            assert (project / "generated/model/model.vmfb").read_bytes() == good

        mark = len(client.messages)
        torch.save(weights(4), project / "weights.pt")
        assert (await client.build_finished(after=mark))["state"] == "done"
        assert carries(project, weights(4), tmp_path) <= 1e-5
        await client.close()
    finally:
        service.stop()


def test_reads_are_recorded_inside_the_project_and_explicitly_outside(tmp_path):
    project, elsewhere = tmp_path / "p", tmp_path / "data"
    project.mkdir()
    elsewhere.mkdir()
    torch.save(weights(1), project / "weights.pt")
    (elsewhere / "gain.json").write_text('{"gain": 0.5}')
    (project / "model.py").write_text(
        "import json\nimport torch\nfrom pathlib import Path\n"
        "HERE = Path(__file__).parent\n"
        f"GAIN = json.loads(Path({str(elsewhere / 'gain.json')!r}).read_text())['gain']\n"
        "state = torch.load(HERE / 'weights.pt')\n"
        f"model = torch.nn.Linear({BLOCK}, {BLOCK})\n"
        "model.load_state_dict(state)\n"
        f"example_input = torch.zeros(1, {BLOCK})\n")
    reads = load_model(project / "model.py").reads
    assert [r["path"] for r in reads] == [str(elsewhere / "gain.json"), "weights.pt"]
    assert all(len(r["sha256"]) == 64 for r in reads)

    (project / "weights.pt").unlink()
    with pytest.raises(ModelFileError) as failed:
        load_model(project / "model.py")
    assert failed.value.line == 6 and "weights.pt (missing)" in failed.value.hint
    assert [r["path"] for r in failed.value.reads] == [str(elsewhere / "gain.json"), "weights.pt"]


async def test_watcher_reacts_to_a_data_file_outside_the_project(tmp_path):
    project, runs = tmp_path / "project", tmp_path / "runs"
    project.mkdir()
    runs.mkdir()
    weights_file = runs / "weights.pt"
    weights_file.write_bytes(b"0")
    seen, arrived = [], asyncio.Event()

    def changed(path: Path) -> None:
        seen.append(path.name)
        arrived.set()
    watcher = ProjectWatcher(project, changed)
    watcher.start(asyncio.get_running_loop())
    try:
        watcher.watch_files([weights_file])
        for attempt in range(40):   # until the new folder's watch is in place (it starts on its own thread)
            (runs / "notes.txt").write_text(str(attempt))   # beside it, not read by the model: ignored
            weights_file.write_bytes(str(attempt).encode())
            try:
                await asyncio.wait_for(arrived.wait(), 0.25)
                break
            except asyncio.TimeoutError:
                pass
        await asyncio.sleep(0.2)
        assert seen and set(seen) == {"weights.pt"}
    finally:
        watcher.stop()
