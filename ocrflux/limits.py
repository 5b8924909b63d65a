"""The input limits' defaults (the renderer enforces them; settings take them as defaults).

Apart from `ocrflux.render` so that the settings, which every process reads, do not import
PyMuPDF.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_PAGES", "DEFAULT_MAX_PIXELS"]

# The whole document is held in memory (and travels through Kafka and HTTP bodies); 256 MiB is
# far above any real scan batch while keeping a few documents in flight affordable.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
# Every page costs a model call (~1,000 visual tokens, seconds of GPU time): 2,000 pages is
# already hours of work for one request; bigger jobs should be split by the sender.
DEFAULT_MAX_PAGES = 2000
# Decompression-bomb guard: a few KB of PNG can claim 100,000 x 100,000 px, and decoding needs
# 3-4 bytes a pixel. 80 Mpx admits an A3 scan at 600 dpi (70 Mpx) and stays below Pillow's own
# warning threshold (Image.MAX_IMAGE_PIXELS, ~89.5 Mpx), so accepted images never warn.
DEFAULT_MAX_PIXELS = 80_000_000
