"""Readable tables of a bench result for the terminal."""
from __future__ import annotations

from rich.console import Group
from rich.table import Table

from ..pipeline.variants import describe


def bench_table(result: dict) -> Group:
    latency = result["latency_ms"]
    estimate = result.get("estimate")
    summary = Table(title=f"{result['model']} on {result['target']} (ran on {result['ran_on']})", show_header=False)
    headline = result.get("ran_on") == "emulator" and estimate and "ms" in estimate
    if headline:   # no board: the estimate is the figure; the emulator's wall time is not the board's
        _estimate_rows(summary, estimate)
    timed = "emulator wall time (not the board's)" if result.get("ran_on") == "emulator" else "latency per block"
    summary.add_row(timed, f"min {latency['min']:.4g} · median {latency['median']:.4g} · "
                    f"p99 {latency['p99']:.4g} · max {latency['max']:.4g} ms ({result['samples']} calls)")
    summary.add_row("deadline", f"{result['deadline_ms']:.4g} ms ({result['block_size']} frames at {result['sample_rate']} Hz)")
    if not headline:
        summary.add_row("headroom", f"{100 * result['headroom']:.1f} %")
    accuracy = result["accuracy"]
    summary.add_row("accuracy", f"max abs error {accuracy['max_abs_err']:.3g} vs PyTorch "
                    f"({'within' if accuracy['within_tolerance'] else '[red]outside[/]'} {accuracy['tolerance']:.2g})")
    if "glue" in result:
        summary.add_row("glue", f"{result['glue']}: {result['glue_reason']} "
                        f"({1000 * result['latency_samples'] / result['sample_rate']:.3g} ms)")
    if "streaming" in result:
        stream = result["streaming"]
        summary.add_row("streaming", f"{stream['blocks']} blocks in a row, state carried: max abs error "
                        f"{stream['max_abs_err']:.3g} vs PyTorch "
                        f"({'within' if stream['within_tolerance'] else '[red]outside[/]'} {stream['tolerance']:.2g})")
    memory = result["memory"]
    peak = f", runtime peak {memory['peak_bytes'] / 1e6:.2f} MB" if memory.get("peak_bytes") else ""
    summary.add_row("memory", f"artifact {memory['artifact_bytes'] / 1e6:.2f} MB{peak}")
    if result.get("tuning"):
        how = "chosen by" if result["tuning"].get("basis") == "counted" else "measured:"
        summary.add_row("IREE flags", f"{result['variant']} ({how} {describe(result['tuning'])})")
    if estimate and "ms" in estimate and not headline:
        _estimate_rows(summary, estimate)
    elif estimate and "ms" not in estimate:
        summary.add_row("estimate", f"[red]not made[/]: {estimate['error']}")
    if result.get("note"):
        summary.add_row("note", result["note"])
    parts = [summary]
    if result["dispatches"]:
        parts.append(_dispatch_table(result["dispatches"]))
    if "peers" in result:
        peers = Table("runtime", "median ms", "ours is", title="peers (1 thread, same input, timed in turns)")
        peers.add_row("bela-iree (IREE)", f"{result.get('side_by_side_ms', latency['median']):.4g}", "")
        for name, figures in result["peers"].items():
            if "median_ms" in figures:
                peers.add_row(name, f"{figures['median_ms']:.4g}", f"{figures['ours_speedup']:.2f}x faster"
                              if figures["ours_speedup"] >= 1 else f"{1 / figures['ours_speedup']:.2f}x slower")
            else:
                peers.add_row(name, "[red]failed[/]", figures["error"][:80])
        parts.append(peers)
    if "blocks" in result:
        parts.append(blocks_table(result))
    return Group(*parts)


def _estimate_rows(summary: Table, estimate: dict) -> None:
    summary.add_row("[bold]estimate[/] on the board", f"{estimate['ms']:.3g} ms per call "
                    f"({estimate['instructions'] / 1e6:.3g} M instructions, {estimate['dram_bytes'] / 1e6:.3g} MB "
                    f"from DRAM) - an estimate, not a measurement")
    if "deadline_ms" in estimate:
        summary.add_row("estimated headroom", f"{100 * estimate['headroom']:.1f} %")
    if "runtime_instructions" in estimate:
        summary.add_row("instructions per call", f"{estimate['kernel_instructions']:,} in the kernels, "
                        f"{estimate['runtime_instructions']:,} in IREE's runtime ({estimate['dispatches']} dispatches, "
                        f"{estimate.get('workgroups', 0)} workgroups)")
    summary.add_row("board model", estimate["model"]["description"])
    if "measured_over_estimated" in estimate:
        summary.add_row("measured / estimated", f"{estimate['measured_over_estimated']:.2f}")


def _dispatch_table(rows: list[dict]) -> Table:
    """Counted on the board's emulated core when there is no board (estimate.counted_dispatches),
    timed otherwise."""
    if any("instructions" in d for d in rows):
        table = Table("dispatch", "kernel instr.", "runtime instr.", "est. ms", "%",
                      title="where the time goes (instructions counted on the emulated core)")
        for d in rows[:10]:
            table.add_row(d["name"], f"{d.get('instructions', 0):,}", f"{d.get('runtime_instructions', 0):,}",
                          f"{d.get('estimate_ms', 0):.3g}", f"{d.get('estimate_percent', 0):.1f}")
        return table
    table = Table("dispatch", "ms", "%", title="where the time goes")
    for d in rows[:10]:
        table.add_row(d["name"], f"{d['ms']:.4g}", f"{d['percent'] or 0:.1f}")
    return table


def blocks_table(result: dict) -> Table:
    """`bench --blocks`: per block, the time per call, its share of the block, the glue, the latency."""
    title = "block size trade-off (Bela's period = the model's block)"
    if result.get("blocks_note"):
        title += f"\n{result['blocks_note']}"
    table = Table("block", "ms per call", "deadline ms", "share", "glue", "latency (samples)", "basis", title=title)
    for row in result["blocks"]:
        ms = "?" if row["estimate_ms"] is None else f"{row['estimate_ms']:.3g}"
        share = "?" if row["share"] is None else f"{100 * row['share']:.0f} %"
        table.add_row(str(row["block"]), ms, f"{row['deadline_ms']:.3g}", share, row["glue"],
                      str(row["latency_samples"]), row.get("basis", ""))
    return table
