"""Block sizes and the glue: where the model runs (render() or the auxiliary task), the trade-off
per block (`bench --blocks`), a block-flexible model exported at another block, and the block
`new` picks. Host target only (timed natively, fast); the estimate-based choice for boards goes
through the same functions with the board estimate as the time per call."""
import tomllib

import pytest

from service.errors import BelaIreeError
from service.glue_choice import choose_glue, latency_samples
from service.pipeline.export import export_model
from service.project import TEMPLATES

from .conftest import cli_json

STARTER = TEMPLATES / "project" / "starter_model.py"
FIXED = """\
import torch
from torch import nn
BLOCK_SIZE = 32
model = nn.Linear(32, 32)                  # mixes the whole block: takes only 32 frames
example_input = torch.ones(1, 32)
"""


@pytest.mark.parametrize("call_ms,model_block,period,expected", [
    (0.088, 16, 16, "render"),      # the starter counted on the Cortex-A8: 24 % of a 16-frame period
    (0.234, 16, 16, "aux_task"),    # lstm_amp: 64 %, more than half the period
    (0.18, 16, 16, "render"),       # just under half of 0.363 ms
    (0.088, 32, 16, "aux_task"),    # fast, but two Bela blocks per model call
    (None, 16, 16, "aux_task"),     # no time per call known yet
])
def test_glue_goes_in_render_only_within_half_the_period_at_the_period(call_ms, model_block, period, expected):
    assert choose_glue(call_ms, model_block, period, 44100) == expected
    assert latency_samples(expected, model_block) == (0 if expected == "render" else 2 * model_block)


def test_a_glue_asked_for_is_kept_and_an_unknown_one_refused():
    assert choose_glue(0.001, 16, 16, 44100, "aux_task") == "aux_task"
    assert choose_glue(9.0, 16, 16, 44100, "render") == "render"
    with pytest.raises(ValueError):
        choose_glue(0.001, 16, 16, 44100, "inside")


def test_a_block_flexible_model_exports_at_another_block_and_a_fixed_one_says_why(tmp_path):
    info = export_model(STARTER, tmp_path / "at32", block=32)
    assert info["block_size"] == 32 and info["inputs"][0]["shape"] == [1, 32] and info["output"]["shape"] == [1, 32]
    fixed = tmp_path / "fixed" / "model.py"
    fixed.parent.mkdir()
    fixed.write_text(FIXED)
    with pytest.raises(BelaIreeError) as error:
        export_model(fixed, tmp_path / "fixed-out", block=16)
    assert error.value.stage == "block" and "only 32-frame blocks" in error.value.message


def test_bench_blocks_gives_the_trade_off_and_one_entry_for_a_fixed_block(tmp_path):
    data, result = cli_json("bench", str(STARTER), "--target", "host", "--seconds", "0.2", "--blocks", "16,64",
                            "--out", str(tmp_path / "starter"))
    assert [row["block"] for row in data["blocks"]] == [16, 64]
    for row in data["blocks"]:
        assert row["deadline_ms"] == pytest.approx(1000 * row["block"] / 44100)
        assert row["share"] == pytest.approx(row["estimate_ms"] / row["deadline_ms"])
        assert row["glue"] == "render" and row["latency_samples"] == 0   # microseconds per call here
    assert "blocks_note" not in data and "block size trade-off" in result.stderr
    # the starter at its own block (16) on this computer: inside render(), nothing added
    assert data["glue"] == "render" and data["latency_samples"] == 0 and "inside render()" in result.stderr

    fixed = tmp_path / "fixed" / "model.py"
    fixed.parent.mkdir()
    fixed.write_text(FIXED)
    data, _ = cli_json("bench", str(fixed), "--target", "host", "--seconds", "0.2", "--blocks", "16,64",
                       "--out", str(tmp_path / "fixed-out"))
    assert [row["block"] for row in data["blocks"]] == [32]
    assert data["blocks_note"].startswith("fixed block:") and "32-frame" in data["blocks_note"]


def test_new_writes_the_smallest_block_that_fits_and_exports_the_model_at_it(tmp_path):
    project = tmp_path / "starter"
    data, _ = cli_json("new", str(project), "--target", "host")
    config = tomllib.loads((project / "bela-iree.toml").read_text())
    assert config["block"] == config["period"] == 16 == data["block"]["chosen"]
    assert data["inputs"][0]["shape"] == [1, 16]
    assert config["input"] == config["output"] == "audio"
    assert '"-p": "16"' in (project / "settings.json").read_text()
