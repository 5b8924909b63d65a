"""The API's outbound HTTP (`/convert/url` downloads and callbacks): the SSRF-guarded client and
policy of the blob store (`streams.blobstore.guarded_http` and `.url_policy`), the one
implementation that the worker's `http(s)://` references use as well, with the same allow-list
setting (`OCRFLUX_FETCH_ALLOW`, `BlobSettings.fetch_allow`).
"""

from __future__ import annotations

from streams.blobstore.guarded_http import GuardedHttp
from streams.blobstore.url_policy import UrlPolicy

__all__ = ["GuardedHttp", "UrlPolicy"]
