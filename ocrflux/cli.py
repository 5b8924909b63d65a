"""The `ocrflux` command: wiring only. Each subcommand parses its flags here and calls one function
of the package that does the work; packages outside the core are imported only by the subcommand
that needs them, so `ocrflux convert` never loads Kafka or web code (the connectors' flags are
added when `connector` is parsed or its help is shown).

Every command configures logging the same way (`ocrflux.logs`) and ends an expected failure with
one line on stderr and an exit code of `ocrflux.exit_codes` (`ocrflux.failures`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ocrflux import logs
from ocrflux.exit_codes import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    USAGE_MEANING,
    exit_status_help,
)
from ocrflux.version import installed_version

Handler = Callable[[argparse.Namespace], int]

_HELP = argparse.RawDescriptionHelpFormatter

_TOP_EPILOG = exit_status_help(
    {
        EXIT_OK: "success",
        EXIT_FAILED: "failure: an input that cannot be read, an output that cannot be written, "
        "a document that failed, Kafka or the local broker not answering",
        EXIT_USAGE: USAGE_MEANING + ", or no Kafka configured",
        EXIT_PARTIAL: "partial result: some pages were not recognized by the model (convert, "
        "submit --wait)",
        EXIT_INTERRUPTED: "interrupted",
    },
    heading="exit status (the same for every command; each command's --help details it)",
) + (
    "\nAn expected failure prints one line on stderr saying what is wrong and how to fix it;\n"
    "--debug (or OCRFLUX_LOG_LEVEL=debug) adds its traceback.\n"
)

_CONVERT_EPILOG = exit_status_help(
    {
        EXIT_OK: "completed (also partial, with --allow-partial)",
        EXIT_FAILED: "failed (the error code says why), the input cannot be read, or the output "
        "cannot be written (nothing is converted when its folder cannot be created)",
        EXIT_USAGE: USAGE_MEANING,
        EXIT_PARTIAL: "partial: some pages were not recognized by the model (fallback pages)",
        EXIT_INTERRUPTED: "interrupted",
    }
)

_ALLOW_PARTIAL_HELP = "exit 0 on a partial result (some pages from the fallback), not 3"

_SUBMIT_EPILOG = """\
outputs (with --wait): STEM.md (.txt, .json or .chunks.json with --format text, json or
  chunks) next to each input, or in --out; its figures (--figures crop) in STEM_figures/.
  When several inputs would get the same file (image.webp and image.bmp), each of them keeps
  its whole name instead (image.webp.md, image.bmp.md); if that still clashes (the same name
  from two folders), -2, -3, ... follow in command-line order (image.pdf.md, image.pdf-2.md).
  An output never replaces an input; the summary says where each went.

--json: one JSON object per line on stdout instead of the text: without --wait one per file
  sent ({"doc_id", "file"}); with --wait one per document as its result arrives ({"doc_id",
  "status", "files", "outputs", "num_pages", "fallback_pages", "error", "warnings",
  "problems"}), then one for each without a result ("status": "missing") or unreadable
  ("status": "unreadable").

""" + exit_status_help(
    {
        EXIT_OK: "every document sent (with --wait: completed, or partial with --allow-partial)",
        EXIT_FAILED: "a file could not be read, or Kafka did not take a document; with --wait: "
        "a document failed, has no result within --timeout, or its output could not be "
        "written (these win over 3)",
        EXIT_USAGE: USAGE_MEANING + ", or no Kafka configured",
        EXIT_PARTIAL: "with --wait: a document is partial (fallback pages)",
        EXIT_INTERRUPTED: "interrupted",
    }
)

_RESULTS_EPILOG = exit_status_help(
    {
        EXIT_OK: "the results were printed (every DOC_ID given had one)",
        EXIT_FAILED: "a DOC_ID given has no result (within --timeout), or Kafka does not answer",
        EXIT_USAGE: USAGE_MEANING + ", or no Kafka configured",
        EXIT_INTERRUPTED: "interrupted (how --follow usually ends)",
    }
)

_CANCEL_EPILOG = exit_status_help(
    {
        EXIT_OK: "the cancels are on Kafka (each DOC_ID is printed); a `cancelled` result "
        "follows for each document still being converted, a finished one keeps its result",
        EXIT_FAILED: "Kafka does not answer",
        EXIT_USAGE: USAGE_MEANING + ", or no Kafka configured",
        EXIT_INTERRUPTED: "interrupted",
    }
)

_WORKER_EPILOG = exit_status_help(
    {
        EXIT_OK: "stopped by SIGTERM or SIGINT after finishing the records in hand",
        EXIT_FAILED: "Kafka does not answer, or its topics do not fit together",
        EXIT_USAGE: USAGE_MEANING + ", or no Kafka configured",
        EXIT_INTERRUPTED: "a second signal stopped it without finishing (the records in hand "
        "are redone by the partitions' next owner)",
    }
)

_BROKER_EPILOG = exit_status_help(
    {
        EXIT_OK: "start: the broker runs (started now or before); stop: stopped, or none was "
        "recorded; status: it runs",
        EXIT_FAILED: "start: it could not be fetched or started (the message says why); "
        "status: no local broker runs",
        EXIT_USAGE: USAGE_MEANING,
        EXIT_INTERRUPTED: "interrupted",
    }
)

_API_EPILOG = exit_status_help(
    {
        EXIT_OK: "stopped by SIGTERM or SIGINT",
        EXIT_FAILED: "it could not start: the port is taken, Kafka (kafka mode) does not answer",
        EXIT_USAGE: USAGE_MEANING,
        EXIT_INTERRUPTED: "interrupted",
    }
)

_CONNECTOR_EPILOG = (
    "Run `ocrflux connector s3-source --help` or `... s3-sink --help` for their flags.\n\n"
    + exit_status_help(
        {
            EXIT_OK: "stopped by SIGTERM or SIGINT after finishing the current item",
            EXIT_FAILED: "a fatal error (each connector's --help says which)",
            EXIT_USAGE: USAGE_MEANING,
            EXIT_INTERRUPTED: "a second signal stopped it at once",
        }
    )
)


def _broker(args: argparse.Namespace) -> int:
    from deploy import kafka_broker as kb

    if args.action == "start":
        state, started = kb.start_default()
        if args.json:
            _print_json({**_state_json(state), "started": started})
        else:
            verb = "started" if started else "already running"
            print(f"Kafka {state.version} {verb} at {state.bootstrap} (pid {state.pid})")
            print(f"export KAFKA_BOOTSTRAP_SERVERS={state.bootstrap}")
        return EXIT_OK
    if args.action == "stop":
        stopped = kb.stop_default()  # the recorded PID only
        if args.json:
            _print_json({"stopped": stopped is not None, "pid": stopped.pid if stopped else None})
        else:
            print(f"stopped Kafka pid {stopped.pid}" if stopped else "no local broker recorded")
        return EXIT_OK
    running = kb.running_state()
    if args.json:
        _print_json(_state_json(running) if running else {"running": False})
    elif running is None:
        print("no local broker running (start one with `ocrflux broker start`)")
    else:
        print(
            f"bootstrap: {running.bootstrap}\nkafka version: {running.version}\n"
            f"pid: {running.pid}\nlog: {running.log_file}"
        )
    return EXIT_OK if running is not None else EXIT_FAILED


def _state_json(state: Any) -> dict[str, Any]:
    return {
        "running": True,
        "bootstrap": state.bootstrap,
        "version": state.version,
        "pid": state.pid,
        "log": str(state.log_file),
    }


def _print_json(value: dict[str, Any]) -> None:
    print(json.dumps(value, ensure_ascii=False), flush=True)


def _convert(args: argparse.Namespace) -> int:
    from ocrflux.convert_command import run_convert

    return run_convert(args)


def _worker(args: argparse.Namespace) -> int:
    from streams.settings import WorkerSettings
    from streams.worker import parse_roles, run_worker

    try:
        roles = parse_roles(args.roles)
    except ValueError as exc:
        print(f"ocrflux worker: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    overrides = {"vllm_url": args.vllm_url, "ocrflux_engine": args.engine}
    settings = WorkerSettings(**{k: v for k, v in overrides.items() if v is not None})
    return run_worker(settings, roles)


def _submit(args: argparse.Namespace) -> int:
    from connectors.cli_commands import run_submit

    return run_submit(args)


def _cancel(args: argparse.Namespace) -> int:
    from connectors.cli_commands import run_cancel

    return run_cancel(args)


def _results(args: argparse.Namespace) -> int:
    from connectors.cli_commands import run_results

    return run_results(args)


def _api(args: argparse.Namespace) -> int:
    from ocrflux.document_api_server_remote import run

    return run(
        {
            "api_host": args.host,
            "api_port": args.port,
            "ocrflux_mode": args.mode,
            "vllm_url": args.vllm_url,
            "ocrflux_engine": args.engine,
        }
    )


def _connector(args: argparse.Namespace) -> int:
    from connectors.s3.cli import run

    return run(args)


def _add_connectors(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    from connectors.s3.cli import add_commands

    add_commands(parser, parents=[common])


def _pages(text: str) -> tuple[tuple[int, int], ...]:
    from schemas.page_ranges import parse_pages

    try:
        return parse_pages(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_FORMATS = ["markdown", "text", "json", "chunks"]
_FIGURE_SCALE_HELP = (
    "with --figures crop: crop from the page rendered X times the model's size (1-4, default 2)"
)
_FORMAT_HELP = "markdown, text, json (the whole result) or chunks (for retrieval)"
_CHUNK_TOKENS_HELP = "with --format chunks: token budget of a chunk (default 512)"


class _VersionAction(argparse.Action):
    """`--version`, reading the installed version only when asked (`installed_version`)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        print(f"ocrflux {installed_version()}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """A parser that can fill itself in (`fill`) the first time it parses or shows its help,
    so that building `ocrflux`'s parser does not import what only one command needs."""

    def __init__(
        self, *args: Any, fill: Callable[[argparse.ArgumentParser], None] | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self._fill = fill

    def _filled(self) -> None:
        fill, self._fill = self._fill, None
        if fill is not None:
            fill(self)

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        self._filled()
        return super().parse_known_args(*args, **kwargs)

    def format_help(self) -> str:
        self._filled()
        return super().format_help()


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = argparse.ArgumentParser(
        prog="ocrflux",
        description="OCRFlux Stream: PDFs and scans to Markdown with OCRFlux-3B, in-process or "
        "as a Kafka stream processor.",
        epilog=_TOP_EPILOG,
        formatter_class=_HELP,
    )
    parser.add_argument("--version", action=_VersionAction)
    logs.add_flags(parser, top_level=True)
    common = _Parser(add_help=False)
    logs.add_flags(common)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    handlers: dict[str, Handler] = {}

    def command(name: str, handler: Handler, epilog: str, **kwargs: Any) -> argparse.ArgumentParser:
        handlers[name] = handler
        return commands.add_parser(
            name, parents=[common], epilog=epilog, formatter_class=_HELP, **kwargs
        )

    convert = command(
        "convert", _convert, _CONVERT_EPILOG, help="convert one document in-process (no Kafka)"
    )
    convert.add_argument("file", help="PDF or image (png, jpeg, bmp, tiff, webp)")
    convert.set_defaults(head_start=None)  # forked by `_start_convert` in the command's own process
    convert.add_argument(
        "-o", "--output", metavar="OUT", help="write here instead of stdout (folders are created)"
    )
    convert.add_argument("--format", choices=_FORMATS, default="markdown", help=_FORMAT_HELP)
    convert.add_argument("--chunk-tokens", type=int, metavar="N", help=_CHUNK_TOKENS_HELP)
    convert.add_argument("--vllm-url", help="vLLM base URL(s), comma-separated (else VLLM_URL)")
    convert.add_argument(
        "--engine",
        choices=["vllm", "local", "auto"],
        help="recognition engine (else OCRFLUX_ENGINE, default auto)",
    )
    convert.add_argument(
        "--max-page-retries",
        type=int,
        metavar="N",
        help="attempts per model task (else MAX_PAGE_RETRIES, default 1)",
    )
    convert.add_argument("--skip-cross-page-merge", action="store_true", default=None)
    convert.add_argument(
        "--pages",
        type=_pages,
        metavar="PAGES",
        help="convert only these pages, e.g. 1-3,7 (1-based, inclusive)",
    )
    convert.add_argument(
        "--json",
        action="store_true",
        help="write the full result object (JSON) instead of the content",
    )
    convert.add_argument(
        "--figures",
        choices=["none", "crop"],
        help="crop: each figure as a PNG, linked where it stood (default with -o, figures in "
        "OUT_figures/ beside OUT, and for JSON, carried inline); none: left out (the default "
        "for markdown, text or chunks on stdout, which cannot carry them)",
    )
    convert.add_argument("--figure-scale", type=float, metavar="X", help=_FIGURE_SCALE_HELP)
    convert.add_argument("--allow-partial", action="store_true", help=_ALLOW_PARTIAL_HELP)

    worker = command("worker", _worker, _WORKER_EPILOG, help="run the stream processor's agents")
    worker.add_argument(
        "--roles",
        default="split,recognize,assemble",
        help="comma-separated subset of split,recognize,assemble (default: all)",
    )
    worker.add_argument(
        "--engine",
        choices=["vllm", "local", "auto"],
        help="default recognition engine (else OCRFLUX_ENGINE, default auto)",
    )
    worker.add_argument("--vllm-url", help="vLLM base URL(s), comma-separated (else VLLM_URL)")
    # Deprecated spelling of --log-level (crit, error, warn, info, debug), kept for scripts.
    worker.add_argument(
        "--loglevel",
        dest="log_level",
        type=logs.old_level,
        choices=logs.LEVELS,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )

    broker = command(
        "broker", _broker, _BROKER_EPILOG, help="run a local single-node Apache Kafka broker"
    )
    broker.add_argument("action", choices=["start", "stop", "status"])
    broker.add_argument("--json", action="store_true", help="print one JSON object")

    submit = command(
        "submit",
        _submit,
        _SUBMIT_EPILOG,
        help="send documents to the stream processor (Kafka) and print their doc_ids",
    )
    submit.add_argument("files", nargs="+", metavar="FILE", help="PDFs or images")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="show a progress bar per document, write the results, print a summary",
    )
    submit.add_argument(
        "--out",
        metavar="DIR",
        help="with --wait: write results here, created if missing (default: next to each input)",
    )
    submit.add_argument("--format", choices=_FORMATS, default="markdown", help=_FORMAT_HELP)
    submit.add_argument("--chunk-tokens", type=int, metavar="N", help=_CHUNK_TOKENS_HELP)
    submit.add_argument("--max-page-retries", type=int, metavar="N", help="attempts per model task")
    submit.add_argument("--skip-cross-page-merge", action="store_true")
    submit.add_argument(
        "--engine", choices=["vllm", "local", "auto"], help="default: the worker's engine"
    )
    submit.add_argument(
        "--pages", type=_pages, metavar="PAGES", help="only these pages, e.g. 1-3,7 (1-based)"
    )
    submit.add_argument(
        "--figures",
        choices=["none", "crop"],
        default="crop",
        help="crop (default): each figure as a PNG, linked where it stood (with --wait, "
        "written to STEM_figures/ beside each output); none: left out",
    )
    submit.add_argument("--figure-scale", type=float, metavar="X", help=_FIGURE_SCALE_HELP)
    submit.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --wait: stop waiting after this"
    )
    submit.add_argument("--allow-partial", action="store_true", help=_ALLOW_PARTIAL_HELP)
    submit.add_argument(
        "--json", action="store_true", help="JSON lines on stdout instead of text (see below)"
    )

    results = command(
        "results", _results, _RESULTS_EPILOG, help="print document results from Kafka"
    )
    results.add_argument("doc_ids", nargs="*", metavar="DOC_ID", help="only these documents")
    results.add_argument("--follow", action="store_true", help="keep printing new results")
    results.add_argument(
        "--wait", action="store_true", help="wait until every DOC_ID given has a result"
    )
    results.add_argument("--json", action="store_true", help="one full result (JSON) per line")
    results.add_argument("--timeout", type=float, metavar="SECONDS", help="stop reading after this")

    cancel = command(
        "cancel", _cancel, _CANCEL_EPILOG, help="cancel documents sent to the stream processor"
    )
    cancel.add_argument("doc_ids", nargs="+", metavar="DOC_ID")
    cancel.add_argument("--reason", help="kept with the cancel on Kafka")

    api = command(
        "api",
        _api,
        _API_EPILOG,
        help="run the HTTP API (the deployment guide's server; direct or kafka mode)",
    )
    api.add_argument("--host", help="listen address (else API_HOST, default 0.0.0.0)")
    api.add_argument("--port", type=int, help="listen port (else API_PORT, default 8001)")
    api.add_argument("--mode", choices=["direct", "kafka"], help="else OCRFLUX_MODE (direct)")
    api.add_argument("--vllm-url", help="vLLM base URL(s) (else VLLM_URL, http://localhost)")
    api.add_argument("--engine", choices=["vllm", "local", "auto"], help="else OCRFLUX_ENGINE")

    command(
        "connector",
        _connector,
        _CONNECTOR_EPILOG,
        help="object-storage connectors: s3-source, s3-sink (long-running)",
        description="Object-storage connectors (long-running).",
        fill=lambda connector: _add_connectors(connector, common),
    )
    return parser, handlers


def main(argv: Sequence[str] | None = None, *, exit_now: bool = False) -> int:
    """Run one command; `exit_now` (the executable's `entry`: the process is the command's own)
    starts `ocrflux convert` as a one-shot process (`_start_convert`) and ends the one-shot
    commands (`_EXITS_NOW`) by `_exit_now`."""
    parser, handlers = build_parser()
    args = parser.parse_args(argv)  # --version and --help end here, before pydantic is imported
    if exit_now and args.command == "convert":
        _start_convert(args)
    from ocrflux.failures import run_guarded

    prog = " ".join(["ocrflux", args.command, *([args.connector] if "connector" in args else [])])

    if args.command in _READ_ONLY:
        from ocrflux.interrupts import end_after_interrupt

        end_after_interrupt(prog)

    def run() -> int:
        logs.configure(logs.flag_level(args))
        return handlers[args.command](args)

    try:
        code = run_guarded(prog, run, debug=args.debug)
    finally:
        head_start = getattr(args, "head_start", None)
        if head_start is not None:  # the command closes it once converted; not if it failed
            head_start.close()
    if exit_now and args.command in _EXITS_NOW:
        _exit_now(code)
    return code


def _start_convert(args: argparse.Namespace) -> None:
    """A one-shot `ocrflux convert`: the collector off while it loads (`ocrflux.collector`; the
    command resumes it once its driver is loaded) and its head start forked at once
    (`ocrflux.head_start`: the child loads the renderer while this process loads the settings;
    the command hands it the document once read)."""
    from ocrflux import collector
    from ocrflux.head_start import HeadStart

    collector.pause()
    args.head_start = HeadStart.fork()


#: Commands with nothing to finish when interrupted: SIGINT ends them even when the
#: KeyboardInterrupt is swallowed on its way (`ocrflux.interrupts`).
_READ_ONLY = frozenset({"results"})

#: Commands that have closed everything they opened when they return (the SDK client's
#: producer flushed, its readers closed), so nothing is lost by skipping the teardown.
_EXITS_NOW = frozenset({"convert", "submit", "cancel", "results"})


def _exit_now(code: int) -> NoReturn:
    """End the process once its output is out, without the interpreter's teardown: freeing
    PyMuPDF's, pydantic's and aiohttp's modules costs `convert` 0.2 s after its work is done,
    and the last garbage collection among the Kafka client's objects `submit --wait` 0.14 s."""
    if "ocrflux.render_pool" in sys.modules:  # its processes must not outlive this one
        sys.modules["ocrflux.render_pool"].close_shared_pools()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing can reach it
            stream.flush()
    os._exit(code)


def entry() -> NoReturn:
    """The `ocrflux` executable."""
    sys.exit(main(exit_now=True))


if __name__ == "__main__":
    entry()
