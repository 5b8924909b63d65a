"""The connector's errors. Library errors (botocore, aiohttp, aiokafka) are translated into
these at the boundary, so the run loops decide by class alone: retry with backoff, skip one
object, or stop."""

from __future__ import annotations


class ConnectorError(RuntimeError):
    """Base of the object-storage connector's errors."""


class TransientError(ConnectorError):
    """The store or Kafka refused or did not answer; the run loop backs off and tries again."""


class AccessDenied(TransientError):
    """Wrong or missing credentials, or no permission. Retried (an operator may fix the secret
    or the policy while we wait), and reported as one clear line per attempt."""


class StoreUnavailable(TransientError):
    """The S3 (or SQS) endpoint is unreachable, timed out or answered 5xx; or the bucket or
    queue does not exist (yet)."""


class ObjectChanged(ConnectorError):
    """The object is gone, or no longer holds the version (ETag) we were told about. Not an
    error of the run: a newer version, if any, is discovered on its own."""


class FatalError(ConnectorError):
    """Retrying cannot help (another instance took over our transactional id): the process
    stops with exit status 1."""
