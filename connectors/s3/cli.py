"""`ocrflux connector s3-source|s3-sink`: flags into one settings object, metrics, signals, and
the run loop (wiring only). `add_commands` adds both to a parser (`ocrflux connector`'s, or the
stand-alone one of `build_parser`); `run` runs the one parsed.

Exit status (`ocrflux.exit_codes`): 0 after SIGTERM / SIGINT (the current item is finished and
flushed first), 1 after a fatal error, 2 for invalid flags or settings, 130 when a second signal
stops it at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, get_args

from connectors.s3.settings import DEFAULT_SUFFIXES, S3SinkSettings, S3SourceSettings
from ocrflux import logs
from ocrflux.exit_codes import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    USAGE_MEANING,
    exit_status_help,
)
from ocrflux.failures import run_guarded
from schemas.options import (
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_FIGURE_SCALE,
    MAX_FIGURE_SCALE,
    MIN_FIGURE_SCALE,
    FiguresMode,
    OutputFormat,
)

log = logging.getLogger("connectors.s3")

_EPILOG = exit_status_help(
    {
        EXIT_OK: "stopped by SIGTERM or SIGINT after finishing and flushing the current item",
        EXIT_FAILED: "a fatal error (another instance took over, Kafka refused the transaction)",
        EXIT_USAGE: USAGE_MEANING + " (no bucket, --discovery sqs without --queue-url, ...)",
        EXIT_INTERRUPTED: "a second signal stopped it at once",
    }
)


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "S3 connection (unset: botocore's chain: AWS_ENDPOINT_URL, AWS_REGION / "
        "AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws)"
    )
    group.add_argument("--endpoint-url", help="S3 endpoint, e.g. http://127.0.0.1:9000")
    group.add_argument("--region", help="region name")
    group.add_argument("--access-key-id", help="access key id (prefer the environment)")
    group.add_argument(
        "--secret-access-key", help="secret access key (prefer AWS_SECRET_ACCESS_KEY)"
    )
    common = parser.add_argument_group("process")
    common.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics on this port (0: any free)"
    )
    common.add_argument("--metrics-host", help="address of the metrics endpoint (127.0.0.1)")
    common.add_argument(
        "--retry-initial", type=float, metavar="SECONDS", help="first backoff delay (1)"
    )
    common.add_argument(
        "--retry-max", type=float, metavar="SECONDS", help="longest backoff delay (60)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The stand-alone parser (`main`): `ocrflux connector`'s flags and commands."""
    parser = argparse.ArgumentParser(
        prog="ocrflux connector", description="Object-storage connectors (long-running)."
    )
    common = argparse.ArgumentParser(add_help=False)
    logs.add_flags(common)
    add_commands(parser, parents=[common])
    return parser


def add_commands(
    parser: argparse.ArgumentParser, parents: Sequence[argparse.ArgumentParser] = ()
) -> None:
    """`s3-source` and `s3-sink` as subcommands of `parser`, each with the `parents`' flags."""
    commands = parser.add_subparsers(dest="connector", required=True, metavar="CONNECTOR")
    shared: dict[str, Any] = {
        "parents": list(parents),
        "epilog": _EPILOG,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    source = commands.add_parser(
        "s3-source",
        **shared,
        help="submit new and changed objects of a bucket as claim-check documents",
        description="Submit each new or changed object under s3://BUCKET/PREFIX once per "
        "(key, ETag) to the documents topic; the bytes stay in the bucket.",
    )
    source.add_argument("--bucket", help="bucket to watch (else OCRFLUX_S3_BUCKET)")
    source.add_argument("--prefix", help="only keys under this prefix")
    source.add_argument("--discovery", choices=["list", "sqs"], help="how objects are found")
    source.add_argument("--queue-url", help="SQS queue that receives the bucket's events")
    source.add_argument("--sqs-endpoint-url", help="SQS endpoint (default: --endpoint-url)")
    source.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help="listing: time between passes (30); SQS: longest wait of one receive (<= 20)",
    )
    source.add_argument(
        "--suffix",
        action="append",
        metavar="SUFFIX",
        help=f"only keys ending so, repeatable (default: {' '.join(DEFAULT_SUFFIXES)})",
    )
    source.add_argument(
        "--any-suffix", action="store_true", help="submit keys whatever their suffix"
    )
    source.add_argument(
        "--content-type",
        action="append",
        metavar="TYPE",
        help="only objects stored with this Content-Type, repeatable",
    )
    source.add_argument("--min-size", metavar="SIZE", help="skip smaller objects (1; e.g. 1K)")
    source.add_argument("--max-size", metavar="SIZE", help="skip larger objects (e.g. 200M)")
    source.add_argument("--concurrency", type=int, help="objects read at once (4)")
    source.add_argument(
        "--visibility-timeout", type=int, metavar="SECONDS", help="SQS visibility timeout (300)"
    )
    source.add_argument(
        "--initial-scan",
        action="store_true",
        default=None,
        help="SQS: list the prefix once at start, for objects that have no event",
    )
    source.add_argument("--instance-id", help="Kafka transactional id (default: derived)")
    source.add_argument(
        "--figures",
        choices=get_args(FiguresMode),
        help="crop (default): cut each figure out as a PNG, which the sink writes beside the "
        "Markdown as <key>_figures/<name> and links; none: leave figures out",
    )
    source.add_argument(
        "--figure-scale",
        type=float,
        metavar="X",
        help=f"with --figures crop: crop from the page rendered X times the model's size "
        f"({MIN_FIGURE_SCALE:g}-{MAX_FIGURE_SCALE:g}, default {DEFAULT_FIGURE_SCALE:g})",
    )
    _connection_flags(source)

    sink = commands.add_parser(
        "s3-sink",
        **shared,
        help="write results to a bucket as <out-prefix>/<key>.json and .md (or .txt, .chunks.json)",
        description="Write each result of the results topic to a bucket, next to the key of "
        "the object it came from (idempotent); its figures, if any, go to <key>_figures/.",
    )
    sink.add_argument("--bucket", help="bucket to write to (else OCRFLUX_S3_BUCKET)")
    sink.add_argument("--out-prefix", help="key prefix of the outputs (default: ocrflux)")
    sink.add_argument(
        "--format",
        choices=get_args(OutputFormat),
        help="what goes next to each result's .json: .md, .txt, .chunks.json, or nothing (json)",
    )
    sink.add_argument(
        "--chunk-tokens",
        type=int,
        metavar="N",
        help=f"with --format chunks: a chunk's token budget (default {DEFAULT_CHUNK_TOKENS})",
    )
    sink.add_argument("--group-id", help="Kafka consumer group (default: derived)")
    sink.add_argument(
        "--source-bucket", help="only results of objects from this bucket (default: all)"
    )
    _connection_flags(sink)


_SHARED = {
    "bucket": "ocrflux_s3_bucket",
    "endpoint_url": "ocrflux_s3_endpoint_url",
    "region": "ocrflux_s3_region",
    "access_key_id": "ocrflux_s3_access_key_id",
    "secret_access_key": "ocrflux_s3_secret_access_key",
    "metrics_port": "ocrflux_metrics_port",
    "metrics_host": "ocrflux_metrics_host",
    "retry_initial": "ocrflux_s3_retry_initial_s",
    "retry_max": "ocrflux_s3_retry_max_s",
}
_SOURCE = {
    "prefix": "ocrflux_s3_prefix",
    "discovery": "ocrflux_s3_discovery",
    "queue_url": "ocrflux_s3_queue_url",
    "sqs_endpoint_url": "ocrflux_sqs_endpoint_url",
    "poll_interval": "ocrflux_s3_poll_interval_s",
    "suffix": "ocrflux_s3_suffixes",
    "content_type": "ocrflux_s3_content_types",
    "min_size": "ocrflux_s3_min_size",
    "max_size": "ocrflux_s3_max_size",
    "concurrency": "ocrflux_s3_concurrency",
    "visibility_timeout": "ocrflux_s3_visibility_timeout_s",
    "initial_scan": "ocrflux_s3_initial_scan",
    "instance_id": "ocrflux_s3_instance_id",
    "figures": "ocrflux_s3_figures",
    "figure_scale": "ocrflux_s3_figure_scale",
}
_SINK = {
    "out_prefix": "ocrflux_s3_out_prefix",
    "format": "ocrflux_s3_format",
    "chunk_tokens": "ocrflux_s3_chunk_tokens",
    "group_id": "ocrflux_s3_group_id",
    "source_bucket": "ocrflux_s3_source_bucket",
}


def _overrides(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    given = {field: getattr(args, flag, None) for flag, field in names.items()}
    values = {field: value for field, value in given.items() if value is not None}
    if getattr(args, "any_suffix", False):
        values["ocrflux_s3_suffixes"] = ()
    return values


def settings_from_args(args: argparse.Namespace) -> S3SourceSettings | S3SinkSettings:
    """The process's settings: environment, overridden by the flags given."""
    if args.connector == "s3-source":
        return S3SourceSettings(**_overrides(args, {**_SHARED, **_SOURCE}))
    return S3SinkSettings(**_overrides(args, {**_SHARED, **_SINK}))


def main(argv: Sequence[str] | None = None) -> int:
    """`ocrflux connector ...` on its own: parse, configure logging, `run`."""
    args = build_parser().parse_args(argv)

    def start() -> int:
        logs.configure(logs.flag_level(args))
        return run(args)

    return run_guarded(
        f"ocrflux connector {args.connector}", start, debug=getattr(args, "debug", False)
    )


def run(args: argparse.Namespace) -> int:
    """Run the connector `args` name until a signal; its exit code. Logging is configured and
    failures are reported by the caller (`ocrflux.cli.main` or `main`)."""
    from streams.kafka import LIBRDKAFKA_LOGGER

    # librdkafka repeats every refused connection; the run loop reports failures itself.
    LIBRDKAFKA_LOGGER.setLevel(logging.CRITICAL)
    # botocore tells at INFO where it found credentials and endpoints, once per client.
    for name in ("botocore", "aiobotocore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.root.level))
    settings = settings_from_args(args)  # a ValidationError is a usage error (exit 2)
    if (
        isinstance(settings, S3SourceSettings)
        and settings.ocrflux_s3_discovery == "sqs"
        and not settings.ocrflux_s3_queue_url
    ):
        prog = f"ocrflux connector {args.connector}"
        print(f"{prog}: error: --discovery sqs needs --queue-url", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_run(settings))


async def _run(settings: S3SourceSettings | S3SinkSettings) -> int:
    from connectors.s3.metrics import SinkMetrics, SourceMetrics
    from connectors.s3.sink import S3Sink
    from connectors.s3.source import S3Source

    stop = asyncio.Event()
    runner: S3Source | S3Sink
    if isinstance(settings, S3SourceSettings):
        source_metrics = SourceMetrics()
        runner = S3Source(settings, stop=stop, metrics=source_metrics)
        serve: Callable[[str, int], int] = source_metrics.serve
    else:
        sink_metrics = SinkMetrics()
        runner = S3Sink(settings, stop=stop, metrics=sink_metrics)
        serve = sink_metrics.serve
    if settings.ocrflux_metrics_port is not None:
        port = serve(settings.ocrflux_metrics_host, settings.ocrflux_metrics_port)
        log.info("metrics on http://%s:%d/metrics", settings.ocrflux_metrics_host, port)
    task = asyncio.ensure_future(runner.run())
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if not stop.is_set():
            log.info("%s: finishing the current item, then stopping", signal.Signals(signum).name)
            stop.set()
        else:
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await task
    except asyncio.CancelledError:
        return EXIT_INTERRUPTED
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
