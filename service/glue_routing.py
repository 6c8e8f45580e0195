"""The generated glue's routing of a model's inputs and outputs (export.json's, see
pipeline/routing.py for what model.py declares): which input is the block render() fills frame by
frame, which are knobs (the latest analog input values, once per block), which are noise, and
where the outputs after the first go. The templates read this context; nothing here knows C++."""
from __future__ import annotations

from math import prod


def routing_context(info: dict) -> dict:
    inputs = info["inputs"]
    block_input = next((index for index, i in enumerate(inputs)
                        if i["role"] == "input" and i.get("source", "audio") in ("audio", "analog")), -1)
    knobs, noise, first = [], [], 0
    for index, model_input in enumerate(inputs):
        count = prod(model_input["shape"])
        if model_input["role"] == "noise" or model_input.get("source") == "noise":
            noise.append({"index": index, "count": count,
                          "normal": "true" if model_input.get("distribution") == "normal" else "false"})
        elif model_input.get("source") == "knobs":
            knobs.append({"index": index, "count": count, "first": first})
            first += count
    outputs = info.get("outputs") or [info["output"]]
    extra, offset = [], 0
    # analog outputs after the first take the analog channels after the first output's (if analog)
    channel = prod(outputs[0]["shape"]) if outputs[0].get("destination") == "analog" else 0
    for index, output in enumerate(outputs[1:], start=1):
        count = prod(output["shape"])
        destination = output.get("destination", "control")
        extra.append({"index": index, "count": count, "offset": offset, "destination": destination,
                      "channel": channel})
        offset += count
        channel += count if destination == "analog" else 0
    return {"block_input": block_input, "knob_inputs": knobs, "knob_total": first, "noise": noise,
            "output_counts": [prod(o["shape"]) for o in outputs], "extra_outputs": extra, "extra_total": offset}
