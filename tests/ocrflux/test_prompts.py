"""The image attached to the text-only tasks B and C."""

from __future__ import annotations

import io

from PIL import Image

from ocrflux.prompts import blank_image_png
from tests.fakes.chat_requests import blank_png


def test_the_blank_image_has_the_pixels_pillow_makes() -> None:
    # Written without Pillow; the model must see what the reference sends: 28x28 black RGB.
    ours = Image.open(io.BytesIO(blank_image_png()))
    reference = Image.open(io.BytesIO(blank_png()))
    assert (ours.format, ours.mode, ours.size) == ("PNG", "RGB", (28, 28))
    assert ours.tobytes() == reference.tobytes() == bytes(28 * 28 * 3)
