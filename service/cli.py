"""The `bela-iree` command line (contract in docs/design.md). Thin: parse, call, print.

Commands with --json print exactly one JSON object on stdout; everything else goes to stderr.
Errors exit with code 1 and, with --json, print {"error": {...}}.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from .error_report import print_error
from .errors import BelaIreeError
from .layout import BOARD_ROOT, CONFIG, MODEL_FILE

console = Console(stderr=True)


def _add_model_args(p: argparse.ArgumentParser, targets_required: bool = True) -> None:
    from .pipeline.compile import COMPILE_TIMEOUT
    from .pipeline.targets import BACKENDS, FORMATS, TARGETS
    p.add_argument("model", help="a zoo name, a path to a model.py, a project directory, or a TorchScript file (.jit, .pt)")
    p.add_argument("--input-shape", help="a TorchScript file's input shape, e.g. 1,512,2 (else from NAME.json beside it)")
    p.add_argument("--target", required=targets_required, default="host", choices=list(TARGETS))
    p.add_argument("--format", default="vmfb", choices=FORMATS)
    p.add_argument("--backend", default="llvm-cpu", choices=BACKENDS)
    p.add_argument("--timeout", type=float, default=COMPILE_TIMEOUT, help=f"seconds iree-compile may take (default {COMPILE_TIMEOUT:g})")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--no-tune", dest="tune", action="store_false",
                   help="skip measuring flag variants (host vmfb, or on the board with --board) and use IREE's default flags")


def _add_board_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", help="a Bela board over SSH: USER@HOST[:PORT] (e.g. root@bela.local)")
    p.add_argument("--board-root", help=f"the Bela folder on the board (default {BOARD_ROOT})")
    p.add_argument("--board-tools", help="the IREE runtime tools on the board (default BOARD_ROOT/libraries/iree/bin)")
    p.add_argument("--board-prefix", help="a command prefix for those tools, e.g. an emulator")


def _board(args, project: Path | None = None):
    """The Board of --board, its settings from the command line, else bela-iree.toml."""
    if not getattr(args, "board", None):
        return None
    from .board.address import BoardAddress
    from .board.connection import Board
    from .project import ProjectConfig
    config = ProjectConfig.load(project) if project else ProjectConfig()
    return Board(BoardAddress.parse(args.board), root=args.board_root or config.board_root,
                 tools=args.board_tools or config.board_tools or None,
                 tools_prefix=args.board_prefix if args.board_prefix is not None else config.board_prefix)


def _block_list(text: str) -> list[int]:
    try:
        blocks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give block sizes as numbers, e.g. 16,32,64,128") from None
    if not blocks or min(blocks) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give block sizes of at least 1 frame, e.g. 16,32,64,128")
    return blocks


def parser() -> argparse.ArgumentParser:
    from .builder import SERVE_COMPILE_TIMEOUT, SERVE_EXPORT_TIMEOUT
    from .pipeline.targets import FORMATS, TARGETS
    top = argparse.ArgumentParser(prog="bela-iree", description="Put a PyTorch model inside a Bela instrument with IREE.")
    commands = top.add_subparsers(dest="command", required=True)

    zoo = commands.add_parser("zoo", help="the model zoo").add_subparsers(dest="zoo_command", required=True)
    listing = zoo.add_parser("list", help="list the zoo's models")
    listing.add_argument("--json", action="store_true")
    export = zoo.add_parser("export", help="export zoo models to MLIR, ONNX and TorchScript")
    export.add_argument("names", nargs="*", help="models to export (default: all)")
    export.add_argument("--out", required=True, type=Path)
    export.add_argument("--formats", default="mlir,onnx,torchscript")
    export.add_argument("--json", action="store_true")

    compile_ = commands.add_parser("compile", help="compile a model for a target")
    _add_model_args(compile_)
    compile_.add_argument("--out", type=Path, help="folder for the artifacts (default: ./build/MODEL-TARGET-FORMAT)")
    compile_.add_argument("--block-size", type=int, help="frames per call of a .nam capture (default 128)")
    bench = commands.add_parser("bench", help="measure latency, accuracy and memory against the audio deadline")
    _add_model_args(bench)
    bench.add_argument("--peers", action="store_true", help="also measure eager PyTorch, TorchScript, ONNX Runtime")
    bench.add_argument("--block-size", type=int, help="audio frames per call (default: the model's BLOCK_SIZE; "
                       "a .nam capture is built for this block, default 128)")
    bench.add_argument("--sample-rate", type=int, help="Hz (default: the model's SAMPLE_RATE, else 44100)")
    bench.add_argument("--seconds", type=float, default=2.0, help="measuring time budget (default 2)")
    bench.add_argument("--blocks", type=_block_list, help="comma-separated block sizes (e.g. 16,32,64,128): the latency / "
                       "CPU trade-off, a block-flexible model exported at each")
    bench.add_argument("--out", type=Path, help="folder for the compiled artifacts")
    _add_board_args(bench)
    new = commands.add_parser("new", help="create a Bela project that runs a model")
    new.add_argument("dir", type=Path)
    new.add_argument("--model", help="a zoo model, a .nam capture, or a TorchScript file (.jit, .pt); a file is copied "
                                      "into the project, with a model.py that loads it (default: a small starter model)")
    new.add_argument("--input-shape", help="a TorchScript file's input shape, e.g. 1,512,2 (else from NAME.json beside it)")
    new.add_argument("--format", default="vmfb", choices=FORMATS)
    new.add_argument("--target", default="bela", choices=list(TARGETS), help="the board (host: this computer, for trying)")
    new.add_argument("--block", type=int, help="frames per model call for a block-flexible model (0: the model's own; "
                     "default: the smallest Bela period it fits in with headroom)")
    new.add_argument("--json", action="store_true")

    build = commands.add_parser("build", help="rebuild a project's generated/ folder from model.py")
    build.add_argument("dir", type=Path)
    build.add_argument("--target", choices=list(TARGETS), help=f"override {CONFIG}'s target")
    build.add_argument("--json", action="store_true")
    _add_board_args(build)
    serve = commands.add_parser("serve", help="rebuild on every save and show live results in the browser")
    serve.add_argument("dir", type=Path)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--target", choices=list(TARGETS), help=f"override {CONFIG}'s target")
    serve.add_argument("--ide-url", help="a Bela IDE to serve with the panel injected (default with --board: http://BOARD/)")
    serve.add_argument("--ide-port", type=int, default=8766)
    _add_board_args(serve)
    serve.add_argument("--export-timeout", type=float, default=SERVE_EXPORT_TIMEOUT,
                       help=f"seconds an export may take (default {SERVE_EXPORT_TIMEOUT:g})")
    serve.add_argument("--compile-timeout", type=float, default=SERVE_COMPILE_TIMEOUT,
                       help=f"seconds iree-compile may take (default {SERVE_COMPILE_TIMEOUT:g})")
    serve.add_argument("--no-tune", dest="tune", action="store_false",
                       help="do not measure IREE flag variants after a model's first build (host)")
    board = commands.add_parser("board", help="a Bela board over SSH").add_subparsers(dest="board_command", required=True)
    check = board.add_parser("check", help="what the board has: architecture, Bela, Xenomai, IREE runtime, space")
    check.add_argument("board")
    check.add_argument("--board-root", default=BOARD_ROOT)
    check.add_argument("--board-tools")
    check.add_argument("--json", action="store_true")
    setup = board.add_parser("setup", help="build (if needed) and install the matching IREE runtime on the board")
    setup.add_argument("board")
    setup.add_argument("--board-root", default=BOARD_ROOT)
    setup.add_argument("--target", choices=list(TARGETS), help="the runtime's target (default: from the board's architecture)")
    setup.add_argument("--board-prefix", default="", help="a command prefix for the runtime tools, e.g. an emulator")
    setup.add_argument("--source", help="IREE's source, as for `runtime build`")
    setup.add_argument("--source-commit", help="the IREE commit of --source, when it cannot tell")
    setup.add_argument("--json", action="store_true")

    for verb, summary in (("run", "build and run a project on the board (through the Bela IDE when it is up, else SSH)"),
                          ("stop", "stop the program running on the board")):
        program = board.add_parser(verb, help=summary)
        program.add_argument("board")
        program.add_argument("project", help="the project's name in the board's projects/ folder")
        program.add_argument("--board-root", default=BOARD_ROOT)
        program.add_argument("--ide-url", help="the board's Bela IDE (default http://HOST/); SSH when it does not answer")
        program.add_argument("--json", action="store_true")
    status = board.add_parser("status", help="what the board's running program plays (its status file)")
    status.add_argument("board")
    status.add_argument("project", nargs="?", help="a project (default: the newest status file under projects/)")
    status.add_argument("--board-root", default=BOARD_ROOT)
    status.add_argument("--json", action="store_true")

    runtime = commands.add_parser("runtime", help="the IREE runtime for a board").add_subparsers(
        dest="runtime_command", required=True)
    runtime_build = runtime.add_parser("build", help="build the IREE runtime, its tools and runtime/ for a board (cached)")
    runtime_build.add_argument("--target", required=True, choices=list(TARGETS))
    runtime_build.add_argument("--source", help="IREE's source: a folder, a tarball or a URL "
                               "(default: $BELA_IREE_RUNTIME_SOURCE, else the compiler's release, fetched with git)")
    runtime_build.add_argument("--source-commit", help="the IREE commit of --source, when it cannot tell")
    runtime_build.add_argument("--json", action="store_true")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler = {"zoo": _zoo, "compile": _compile, "bench": _bench, "new": _new, "build": _build, "serve": _serve, "board": _board_command,
               "runtime": _runtime}[args.command]
    try:
        return handler(args)
    except BelaIreeError as e:
        if getattr(args, "json", False):
            print(json.dumps({"error": e.to_json()}))
        print_error(console, e)
        return 1


def _emit(args, data: dict) -> None:
    if args.json:
        print(json.dumps(data))


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        console.print(f"[yellow]warning[/]: {warning}")


def _zoo(args) -> int:
    import zoo

    from .modelfile import describe_zoo_model
    if args.zoo_command == "list":
        with console.status("loading the zoo"):
            models = [describe_zoo_model(name) for name in zoo.names()]
        if args.json:
            print(json.dumps({"models": models}))
        else:
            from rich.table import Table
            table = Table("name", "input", "output", "parameters", "summary")
            for m in models:
                table.add_row(m["name"], str(m["input_shape"]), str(m["output_shape"]), f"{m['parameters']:,}", m["summary"])
            Console().print(table)
        return 0
    from zoo.export_all import FORMATS, export_zoo, summary_table
    formats = args.formats.split(",")
    unknown = [f for f in formats if f not in FORMATS] + [n for n in args.names if n not in zoo.names()]
    if unknown:
        raise BelaIreeError(f"unknown format or model: {', '.join(unknown)}", stage="usage",
                            hint=f"formats: {', '.join(FORMATS)}; models: {', '.join(zoo.names())}")
    results = export_zoo(args.names or zoo.names(), args.out, formats, console)
    console.print(summary_table(results, formats))
    _emit(args, {"out": str(args.out), "models": results})
    failed = any("error" in r for row in results.values() for r in row.values())
    return 1 if failed else 0


def _options(args):
    """The CompileOptions of a model command's arguments."""
    from .pipeline.compile import CompileOptions
    from .pipeline.targets import get_target
    return CompileOptions(get_target(args.target), args.format, args.backend, variant=None if args.tune else "default",
                          compile_timeout=args.timeout)


def _compile(args) -> int:
    from .modelfile import model_name, resolve_model
    from .pipeline.compile import compile_model

    model_file = resolve_model(args.model, args.input_shape, args.block_size)
    options = _options(args)
    target = options.target
    out = args.out or Path("build") / f"{model_name(model_file)}-{target.name}-{args.format}"
    with console.status(f"compiling {model_name(model_file)} for {target.name} ({args.format}, {args.backend})"):
        if args.tune and args.format == "vmfb":
            from .bench.tuning import compile_tuned
            result = compile_tuned(model_file, options, out.resolve())
        else:
            result = compile_model(model_file, options, out.resolve())
    if result.tuning:
        from .pipeline.variants import describe
        console.print(f"flag variants measured: {describe(result.tuning)} -> [bold]{result.variant}[/]", highlight=False)
    _warn(result.warnings)
    if result.export["rewrites"]:
        console.print(f"rewrites applied: {', '.join(result.export['rewrites'])}")
    console.print(f"[green]compiled[/] {result.model} for {target.name}: "
                  f"{', '.join(str(p) for p in result.artifacts)}"
                  f"{' (cached)' if result.cached else ''}", highlight=False)
    _emit(args, result.to_json())
    return 0


def _bench(args) -> int:
    from .bench.bench import bench_model, verdict
    from .bench.report import bench_table
    from .modelfile import model_name, resolve_model
    from .project import project_glue_setting

    model_file = resolve_model(args.model, args.input_shape, args.block_size)
    options = _options(args)
    target = options.target
    out = args.out or Path("build") / f"{model_name(model_file)}-{target.name}-{args.format}"
    board = _board(args, model_file.parent)
    if board and args.format != "vmfb":
        raise BelaIreeError(f"bench --board measures the vmfb format, not {args.format}", stage="usage",
                            hint="drop --format to measure the vmfb on the board; without --board, "
                                 "--format emitc measures the EmitC module here")
    with console.status(f"benchmarking {model_name(model_file)} ({args.format}) on {target.name}"
                        f"{f' on the board {board.address}' if board else ''}{' with peers' if args.peers else ''}"):
        if board:
            result = _bench_on_board(board, model_file, options, out.resolve(), args)
        else:
            period, glue = project_glue_setting(model_file.parent)   # a project's own period and glue
            result = bench_model(model_file, options, out.resolve(), peers=args.peers, block_size=args.block_size,
                                 sample_rate=args.sample_rate, seconds=args.seconds, period=period, glue=glue)
    if args.blocks:
        from .bench.blocks import bench_blocks
        with console.status(f"exporting and timing {model_name(model_file)} at blocks {args.blocks}"):
            result["blocks"], why = bench_blocks(model_file, options, out.resolve(), args.blocks, args.sample_rate)
        if why:
            result["blocks_note"] = f"fixed block: {why}"
    console.print(bench_table(result))
    console.print(verdict(result), highlight=False)
    _emit(args, result)
    return 0


def _bench_on_board(board, model_file: Path, options, out: Path, args) -> dict:
    import asyncio

    from .bench.bench import add_peer_ratios, measure_peers
    from .board.remote_bench import bench_on_board
    from .board.remote_tuning import tune_on_board
    from .pipeline.compile import compile_model

    async def measure():
        await board.connect()
        try:
            if args.tune:  # the flag sets, measured on this board once per model
                await tune_on_board(board, model_file, options)
            compiled = await asyncio.to_thread(compile_model, model_file, options, out)
            result = await bench_on_board(board, compiled, args.seconds, args.block_size, args.sample_rate)
            result["variant"], result["tuning"] = compiled.variant, compiled.tuning
            return result
        finally:
            await board.close()
    result = asyncio.run(measure())
    if args.peers:
        add_peer_ratios(result, measure_peers(model_file))
    return result


def _deploy(board, project: Path) -> dict:
    import asyncio

    from .board.deploy import Deployer

    async def deploy():
        await board.connect()
        try:
            deployer = Deployer(board, project)
            return {"to": deployer.remote_project, **await deployer.deploy()}
        finally:
            await board.close()
    with console.status(f"deploying to {board.address}"):
        deployed = asyncio.run(deploy())
    console.print(f"deployed to {board.address}:{deployed['to']}: {len(deployed['uploaded'])} file(s) sent, "
                  f"{deployed['unchanged']} unchanged", highlight=False)
    return deployed


def _board_command(args) -> int:
    return {"setup": _board_setup, "check": _board_check, "run": _board_program, "stop": _board_program,
            "status": _board_status}[args.board_command](args)


def _board_program(args) -> int:
    """`board run|stop`: the compiler's output streams to stderr; one line says how it ended."""
    import asyncio

    from .board.address import BoardAddress
    from .board.connection import Board
    from .board.program import run_program, stop_program
    board = Board(BoardAddress.parse(args.board), root=args.board_root)
    ide_url = args.ide_url or f"http://{board.address.host}/"

    async def act():
        try:
            if args.board_command == "run":
                return await run_program(board, args.project, ide_url, lambda line: console.print(line, highlight=False,
                                                                                                    markup=False), board.connect)
            return await stop_program(board, args.project, ide_url, board.connect)
        finally:
            await board.close()
    result = asyncio.run(act())
    colour = {"playing": "green", "stopped": "yellow", "build_failed": "red"}[result["state"]]
    console.print(f"[{colour}]{args.project} {result['state'].replace('_', ' ')}[/] on {board.address} "
                  f"(via {result['via']})", highlight=False)
    for error in result["errors"]:
        where = f"{error['file']}:{error['line']}: " if error["file"] else ""
        console.print(f"  [red]error[/]: {where}{error['message']}", highlight=False)
    _emit(args, result)
    return 0 if result["state"] == ("playing" if args.board_command == "run" else "stopped") else 1


def _board_status(args) -> int:
    import asyncio

    from .board.address import BoardAddress
    from .board.connection import Board
    from .board.status import board_status
    board = Board(BoardAddress.parse(args.board), root=args.board_root)

    async def read():
        await board.connect()
        try:
            return await board_status(board, args.project)
        finally:
            await board.close()
    report = asyncio.run(read())
    console.print(status_line(report), highlight=False)
    _emit(args, report)
    return 0


def status_line(report: dict) -> str:
    """One line for a person: "PROJECT playing build 12 since 10:42:03, 3 swaps, 0 overruns"."""
    if report.get("message"):
        return report["message"]
    model = report["model"] or {}
    since = (model.get("since") or "")[11:19]
    playing = f"playing build {model.get('build')}" + (f" since {since}" if since else "")
    state = playing if report["running"] else f"not running (last: {playing})"
    return (f"{report['project']} on {report['address']}: {state}, glue {report['glue']}, "
            f"{report['latency_samples']} samples latency, {report['swaps']} swaps, {report['overruns']} overruns")


def _board_setup(args) -> int:
    import asyncio

    from .board.address import BoardAddress
    from .board.connection import Board
    from .board.setup import setup_board
    from .progress import BuildProgress
    board = Board(BoardAddress.parse(args.board), root=args.board_root, tools_prefix=args.board_prefix)

    async def setup(progress):
        await board.connect()
        try:
            return await setup_board(board, args.target, args.source, args.source_commit, reporter=progress)
        finally:
            await board.close()
    with BuildProgress(console) as progress:
        result = asyncio.run(setup(progress))
    copied = f"{len(result['copied'])} file(s) sent" if result["copied"] or result["removed"] else "already up to date"
    console.print(f"[green]IREE runtime for {result['target']}[/] in {board.address}:{result['dir']}: {copied}; "
                  f"the probe module ran (max error {result['probe']['max_abs_err']:.2g})", highlight=False)
    _emit(args, result)
    return 0


def _board_check(args) -> int:
    import asyncio

    from .board.address import BoardAddress
    from .board.connection import Board
    board = Board(BoardAddress.parse(args.board), root=args.board_root, tools=args.board_tools)
    report = asyncio.run(board.check())
    lines = [f"board {report['address']}: {report['arch']}",
             f"  Xenomai: {report['xenomai'] or 'no'}",
             f"  Bela: {report['bela_root'] or 'not found'}{' (' + report['bela_version'] + ')' if report['bela_version'] else ''}",
             f"  IREE runtime: {report['iree_version'] or 'not found'}{' in ' + report['iree_tools'] if report['iree_tools'] else ''}",
             f"  free space: {report['free_bytes'] / 1e9:.1f} GB" if report["free_bytes"] else "  free space: unknown"]
    lines += [f"  [yellow]problem[/]: {p}" for p in report["problems"]]
    console.print("\n".join(lines), highlight=False)
    _emit(args, report)
    return 0 if not report["problems"] else 1


def _runtime(args) -> int:
    from .progress import BuildProgress
    from .runtimes.build import build_runtime
    with BuildProgress(console) as progress:
        result = build_runtime(args.target, args.source, args.source_commit, reporter=progress)
    _warn(result["warnings"])
    console.print(f"[green]IREE runtime for {result['target']}[/] ({result['arch']}) in {result['dir']}"
                  f"{' (cached)' if result['cached'] else ''}", highlight=False)
    _emit(args, result)
    return 0


def _new(args) -> int:
    from .project import new_project
    with console.status(f"creating {args.dir} and building its model for {args.target}"):
        result = new_project(args.dir, args.model, args.format, args.target, input_shape=args.input_shape,
                             block=args.block)
    _warn(result["warnings"])
    console.print(f"[green]created[/] {result['project']}: open it in the Bela IDE, or run "
                  f"[bold]bela-iree serve {args.dir}[/] to rebuild on every save", highlight=False)
    _emit(args, result)
    return 0


def _build(args) -> int:
    from .project import ProjectConfig, build_project
    with console.status(f"building {args.dir}"):
        result = build_project(args.dir, ProjectConfig.load(args.dir).compile_options(args.target)).to_json()
    board = _board(args, args.dir)
    if board:
        result["deployed"] = _deploy(board, args.dir.resolve())
    _warn(result["warnings"])
    console.print(f"[green]built[/] {result['model']} for {result['target']} in {result['seconds']['total']:.2f} s"
                  f"{' (cached)' if result['cached'] else ''}", highlight=False)
    _emit(args, result)
    return 0


def _serve(args) -> int:
    import asyncio

    from .server import serve
    if not (args.dir / MODEL_FILE).exists():
        raise BelaIreeError(f"{args.dir} has no model.py", stage="usage",
                            hint=f"create a project first: bela-iree new {args.dir} --model basic_mlp")

    def ready(url: str, ide: str | None) -> None:
        console.print(f"[green]bela-iree[/] is watching {args.dir.resolve()}")
        console.print(f"panel: [bold]{url}[/]   (Ctrl-C to stop)", highlight=False)
        if ide:
            console.print(f"Bela IDE with the panel: [bold]{ide}[/]", highlight=False)
        print(url, flush=True)

    board = _board(args, args.dir)
    ide_url = args.ide_url or (f"http://{board.address.host}/" if board else None)
    asyncio.run(serve(args.dir, args.host, args.port, args.target, ready=ready, ide_url=ide_url, board=board,
                      ide_port=args.ide_port,
                      builder_options={"export_timeout": args.export_timeout, "compile_timeout": args.compile_timeout},
                      tune=args.tune))
    return 0
