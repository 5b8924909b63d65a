"""The `ocrflux` command: wiring only. Each subcommand parses its flags here and calls one function
of the package that does the work; packages outside the core are imported only by the subcommand
that needs them, so `ocrflux convert` never loads Kafka or web code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ocrflux.exit_codes import EXIT_INTERRUPTED

Handler = Callable[[argparse.Namespace], int]

_CONVERT_EPILOG = """\
exit status:
  0    completed (also partial, with --allow-partial)
  1    failed, or the output could not be written (nothing is converted when its folder
       cannot be created)
  2    usage error, or the input cannot be read
  3    partial: some pages were not recognized by the model (fallback pages)
  130  interrupted
"""

_ALLOW_PARTIAL_HELP = "exit 0 on a partial result (some pages from the fallback), not 3"

_SUBMIT_EPILOG = """\
outputs (with --wait): STEM.md (STEM.txt with --format text) next to each input, or in --out.
  When several inputs would get the same file (image.webp and image.bmp), each of them keeps
  its whole name instead (image.webp.md, image.bmp.md); if that still clashes (the same name
  from two folders), -2, -3, ... follow in command-line order (image.pdf.md, image.pdf-2.md).
  An output never replaces an input; the summary says where each went.

exit status:
  0    every document sent (with --wait: completed, or partial with --allow-partial)
  1    a file could not be read; with --wait: a document failed, has no result within
       --timeout, or its output could not be written (these win over 3)
  2    usage error, or Kafka cannot be reached
  3    with --wait: a document is partial (fallback pages)
  130  interrupted
"""


def _broker(args: argparse.Namespace) -> int:
    from deploy import kafka_broker as kb

    if args.action == "start":
        state, started = kb.start_default()
        verb = "started" if started else "already running"
        print(f"Kafka {state.version} {verb} at {state.bootstrap} (pid {state.pid})")
        print(f"export KAFKA_BOOTSTRAP_SERVERS={state.bootstrap}")
        return 0
    if args.action == "stop":
        stopped = kb.stop_default()  # the recorded PID only
        print(f"stopped Kafka pid {stopped.pid}" if stopped else "no local broker recorded")
        return 0
    running = kb.running_state()
    if running is None:
        print("no local broker running (start one with `ocrflux broker start`)")
        return 1
    print(
        f"bootstrap: {running.bootstrap}\nkafka version: {running.version}\npid: {running.pid}\n"
        f"log: {running.log_file}"
    )
    return 0


def _convert(args: argparse.Namespace) -> int:
    import asyncio

    from ocrflux.convert_command import run_convert

    return asyncio.run(run_convert(args))


def _worker(args: argparse.Namespace) -> int:
    import logging

    from streams.settings import WorkerSettings
    from streams.worker import parse_roles, run_worker

    levels = {
        "crit": logging.CRITICAL,
        "error": logging.ERROR,
        "warn": logging.WARNING,
        "info": logging.INFO,
        "debug": logging.DEBUG,
    }
    logging.basicConfig(
        level=levels[args.loglevel], format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        roles = parse_roles(args.roles)
    except ValueError as exc:
        print(f"ocrflux worker: error: {exc}", file=sys.stderr)
        return 2
    overrides = {"vllm_url": args.vllm_url, "ocrflux_engine": args.engine}
    settings = WorkerSettings(**{k: v for k, v in overrides.items() if v is not None})
    return run_worker(settings, roles)


def _submit(args: argparse.Namespace) -> int:
    from connectors.cli_commands import run_submit

    return run_submit(args)


def _results(args: argparse.Namespace) -> int:
    from connectors.cli_commands import run_results

    return run_results(args)


def _page_range(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    try:
        return int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST, e.g. 2-5, not {text!r}") from None


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = argparse.ArgumentParser(prog="ocrflux", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Handler] = {}

    convert = commands.add_parser(
        "convert",
        help="convert one document in-process (no Kafka)",
        epilog=_CONVERT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("file", help="PDF or image (png, jpeg, bmp, tiff, webp)")
    convert.add_argument(
        "-o", "--output", metavar="OUT", help="write here instead of stdout (folders are created)"
    )
    convert.add_argument("--format", choices=["markdown", "text"], default="markdown")
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
        type=_page_range,
        metavar="FIRST-LAST",
        help="convert only these pages (1-based, inclusive)",
    )
    convert.add_argument(
        "--json",
        action="store_true",
        help="write the full result object (JSON) instead of the content",
    )
    convert.add_argument("--allow-partial", action="store_true", help=_ALLOW_PARTIAL_HELP)
    handlers["convert"] = _convert

    worker = commands.add_parser("worker", help="run the stream processor's agents")
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
    worker.add_argument(
        "--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"]
    )
    handlers["worker"] = _worker

    broker = commands.add_parser("broker", help="run a local single-node Apache Kafka broker")
    broker.add_argument("action", choices=["start", "stop", "status"])
    handlers["broker"] = _broker

    submit = commands.add_parser(
        "submit",
        help="send documents to the stream processor (Kafka) and print their doc_ids",
        epilog=_SUBMIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    submit.add_argument("--format", choices=["markdown", "text"], default="markdown")
    submit.add_argument("--max-page-retries", type=int, metavar="N", help="attempts per model task")
    submit.add_argument("--skip-cross-page-merge", action="store_true")
    submit.add_argument(
        "--engine", choices=["vllm", "local", "auto"], help="default: the worker's engine"
    )
    submit.add_argument(
        "--pages", type=_page_range, metavar="FIRST-LAST", help="only these pages (1-based)"
    )
    submit.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --wait: stop waiting after this"
    )
    submit.add_argument("--allow-partial", action="store_true", help=_ALLOW_PARTIAL_HELP)
    handlers["submit"] = _submit

    results = commands.add_parser("results", help="print document results from Kafka")
    results.add_argument("doc_ids", nargs="*", metavar="DOC_ID", help="only these documents")
    results.add_argument("--follow", action="store_true", help="keep printing new results")
    results.add_argument(
        "--wait", action="store_true", help="wait until every DOC_ID given has a result"
    )
    results.add_argument("--json", action="store_true", help="one full result (JSON) per line")
    results.add_argument("--timeout", type=float, metavar="SECONDS", help="stop reading after this")
    handlers["results"] = _results

    api = commands.add_parser(
        "api", help="run the HTTP API (the deployment guide's server; direct or kafka mode)"
    )
    api.add_argument("--host", help="listen address (else API_HOST, default 0.0.0.0)")
    api.add_argument("--port", type=int, help="listen port (else API_PORT, default 8001)")
    api.add_argument("--mode", choices=["direct", "kafka"], help="else OCRFLUX_MODE (direct)")
    api.add_argument("--vllm-url", help="vLLM base URL(s) (else VLLM_URL, http://localhost)")
    api.add_argument("--engine", choices=["vllm", "local", "auto"], help="else OCRFLUX_ENGINE")

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

    handlers["api"] = _api

    connector = commands.add_parser(
        "connector",
        help="object-storage connectors: s3-source, s3-sink (long-running)",
        description="Run `ocrflux connector s3-source --help` or `... s3-sink --help`.",
    )
    connector.add_argument(
        "args", nargs=argparse.REMAINDER, metavar="{s3-source,s3-sink} ...", help="and its flags"
    )

    def _connector(args: argparse.Namespace) -> int:
        from connectors.s3.cli import main as connector_main

        return connector_main(args.args)

    handlers["connector"] = _connector

    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one place a user-facing message replaces a traceback
        from deploy.kafka_broker import BrokerError
        from ocrflux.errors import OcrfluxError

        if isinstance(exc, BrokerError | OcrfluxError):
            print(f"ocrflux: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
