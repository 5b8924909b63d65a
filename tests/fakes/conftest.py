"""Fixtures for the double's own tests (the double itself is loaded by tests/conftest.py)."""

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client on the test's own event loop."""
    async with aiohttp.ClientSession() as client:
        yield client
