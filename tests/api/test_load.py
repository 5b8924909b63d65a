"""50 concurrent uploads against one instance all complete, and the server's memory stays
bounded (the figure for BENCHMARKS.md comes from `bench/bench_api.py`, the same load)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.bench_api import documents, upload_all
from tests.api.fixtures import ApiProcess

UPLOADS = 50
#: A generous bound: the server idles near 200 MiB (imports) and peaks near 215 MiB here.
PEAK_RSS_LIMIT_MIB = 600


async def test_fifty_concurrent_uploads_complete_within_bounded_memory(
    ocrflux_server_factory: Callable[..., Any], api_servers: Callable[..., ApiProcess]
) -> None:
    server = ocrflux_server_factory(capacity=16)
    api = api_servers(VLLM_URL=server.url)
    docs = documents(UPLOADS, pages=4)
    result = await upload_all(api.url, docs)
    assert result.statuses == [200] * UPLOADS
    assert [answer["status"] for answer in result.answers] == ["success"] * UPLOADS
    assert all(answer["metadata"]["pages_processed"] == 4 for answer in result.answers)
    contents = {answer["content"] for answer in result.answers}
    assert len(contents) == UPLOADS  # every document converted on its own
    assert server.stats()["by_task"]["page"]["200"] == 4 * UPLOADS
    peak_mib = api.peak_rss_kib() / 1024
    assert peak_mib < PEAK_RSS_LIMIT_MIB, f"peak RSS {peak_mib:.0f} MiB"
