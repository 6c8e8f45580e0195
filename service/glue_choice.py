"""Where the generated glue runs the model: inside render() or on Bela's auxiliary task.

"render": the model runs inside render(), once per Bela block, and adds no latency. Chosen when
one call at the model's block takes at most half of Bela's period (the other half is left to the
rest of render() and to the board's own jitter) and the model's block is Bela's period (render()
gets exactly one model block each time it is called).
"aux_task": the auxiliary task runs the model while render() plays the previous block's output:
two model blocks of latency (one to fill the input, one to run the model).

The time per call is the board estimate (instructions counted on the emulated core,
bench/estimate.py) for a board target, the measured median for host. Pure functions, no I/O: the
project's `glue = "auto"|"render"|"aux_task"` (bela-iree.toml) is resolved with `choose_glue`.
"""
from __future__ import annotations

GLUES = ("render", "aux_task")
SETTINGS = ("auto", *GLUES)
RENDER_SHARE = 0.5          # at most this share of Bela's period for the model inside render()
AUX_TASK_LATENCY_BLOCKS = 2  # one block to fill the input, one to run the model


def period_ms(period: int, sample_rate: int) -> float:
    return 1000.0 * period / sample_rate


def choose_glue(call_ms: float | None, model_block: int, period: int, sample_rate: int,
                setting: str = "auto") -> str:
    """"render" or "aux_task" for a model whose call at model_block frames takes call_ms (None: not
    known yet, so the auxiliary task) on a Bela running at `period` frames per block.
    `setting` other than "auto" is what the project asked for and is returned as it is."""
    if setting not in SETTINGS:
        raise ValueError(f"glue {setting!r}: use one of {', '.join(SETTINGS)}")
    if setting != "auto":
        return setting
    fits = call_ms is not None and call_ms <= RENDER_SHARE * period_ms(period, sample_rate)
    return "render" if fits and model_block == period else "aux_task"


def latency_samples(glue: str, model_block: int) -> int:
    """What the glue adds between a sample in and its output, in samples."""
    return 0 if glue == "render" else AUX_TASK_LATENCY_BLOCKS * model_block


def call_ms(bench: dict) -> float | None:
    """The time per call the choice goes by, from a bench result: the board estimate when there
    is one, else a measurement made natively (host) or on a board; never an emulator's wall time."""
    estimate = bench.get("estimate") or {}
    if "ms" in estimate:
        return estimate["ms"]
    if bench.get("ran_on") in ("host", "board"):
        return bench["latency_ms"]["median"]
    return None


def why(glue: str, call: float | None, model_block: int, period: int, sample_rate: int) -> str:
    """One line for the command line and the generated code's comment."""
    budget = RENDER_SHARE * period_ms(period, sample_rate)
    if glue == "render":
        return (f"inside render(): {call:.3g} ms per call, at most half of the {period}-frame period "
                f"({budget:.3g} ms); adds 0 samples") if call is not None else "inside render() (asked for)"
    if call is None:
        reason = "no board time per call yet"
    elif model_block != period:
        reason = f"the model's block ({model_block}) is not Bela's period ({period})"
    elif call > budget:
        reason = f"{call:.3g} ms per call is more than half of the {period}-frame period ({budget:.3g} ms)"
    else:
        reason = "asked for"
    return f"on the auxiliary task: {reason}; adds {latency_samples(glue, model_block)} samples"
