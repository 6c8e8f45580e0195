"""A Neural Amp Modeler capture is a MODEL: compiled and benchmarked on the host and on the
emulated Bela (real IREE, real qemu), and a project made from it (`new --model capture.nam`).
Captures are tiny WaveNets and LSTMs made with NAM's own exporter, for speed."""
from __future__ import annotations

import json
import re

import pytest

from tests import nam_reference as nam

from .conftest import cli, cli_json


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("captures")
    tiny = nam.wavenet_config([(1, 3, 2), (3, 2, 1)], [[1, 2, 4], [8, 1]])
    return {"wavenet": nam.export_capture(nam.make_wavenet(tiny), folder, "tiny_wavenet"),
            "lstm": nam.export_capture(nam.make_lstm(4, 1), folder, "tiny_lstm")}


@pytest.mark.parametrize("kind", ["wavenet", "lstm"])
def test_a_capture_compiles_and_streams_on_the_host(captures, kind, tmp_path):
    compiled, _ = cli_json("compile", str(captures[kind]), "--target", "host", "--block-size", "64",
                           "--out", str(tmp_path / "compiled"))
    assert compiled["model"] == f"tiny_{kind}" and compiled["inputs"][0]["shape"] == [1, 64]
    data, _ = cli_json("bench", str(captures[kind]), "--target", "host", "--block-size", "64", "--no-tune",
                       "--seconds", "0.3", "--out", str(tmp_path / "bench"))
    assert (data["block_size"], data["sample_rate"]) == (64, 48000)     # the capture's rate
    assert data["accuracy"]["within_tolerance"] and data["streaming"]["within_tolerance"]
    assert data["streaming"]["blocks"] >= 2 and data["state"]["reset"]


def test_a_capture_on_the_emulated_bela_is_estimated(captures, tmp_path):
    data, result = cli_json("bench", str(captures["wavenet"]), "--target", "bela", "--block-size", "32",
                            "--no-tune", "--seconds", "0.3", "--out", str(tmp_path))
    assert data["ran_on"] == "emulator"
    assert data["streaming"]["within_tolerance"]
    assert data["estimate"]["instructions"] > 0 and data["deadline_ms"] == pytest.approx(32 / 48)
    assert "estimated on BeagleBone Black (Bela)" in result.stdout + result.stderr


def test_new_copies_the_capture_and_writes_a_model_that_loads_it(captures, tmp_path):
    project = tmp_path / "amp"
    data, _ = cli_json("new", str(project), "--model", str(captures["wavenet"]), "--target", "host")
    assert (project / "tiny_wavenet.nam").read_bytes() == captures["wavenet"].read_bytes()
    text = (project / "model.py").read_text()
    assert '"tiny_wavenet.nam"' in text and "streaming_capture" in text
    config = (project / "bela-iree.toml").read_text()
    period = int(re.search(r"^period = (\d+)", config, re.M).group(1))   # the block new picked
    assert data["inputs"][0]["shape"] == [1, period]                    # bela-iree.toml's period
    # a new block: Bela's period and the model's block (a capture takes any block) in bela-iree.toml
    config = re.sub(r"^period = \d+", "period = 32", config, flags=re.M)
    (project / "bela-iree.toml").write_text(re.sub(r"^block = \d+", "block = 32", config, flags=re.M))
    built, _ = cli_json("build", str(project), "--target", "host")
    assert built["inputs"][0]["shape"] == [1, 32]


def test_a_capture_it_cannot_take_is_refused_by_name(captures, tmp_path):
    data = json.loads(captures["wavenet"].read_text())
    data["architecture"] = "SlimmableWaveNet"
    odd = tmp_path / "odd.nam"
    odd.write_text(json.dumps(data))
    result = cli("compile", str(odd), "--target", "host", "--out", str(tmp_path / "out"), check=False)
    assert result.returncode != 0
    assert "architecture 'SlimmableWaveNet'" in result.stdout + result.stderr
    made = cli("new", str(tmp_path / "project"), "--model", str(odd), "--target", "host", check=False)
    assert made.returncode != 0 and not (tmp_path / "project").exists()
