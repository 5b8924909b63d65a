"""CPU OCR for scanned pages and images: RapidOCR (PP-OCRv6 small, ONNX) to OCRFlux elements.

`OcrReader` runs RapidOCR with the detection and recognition models that ship inside the
`rapidocr` wheel, named by path, so nothing is ever downloaded; the angle classifier is off
(pages arrive upright or are rotated by whole pages, not by line). It is synchronous CPU work:
the `local` engine calls it from its own executor, one RapidOCR instance per worker thread.

`ocr_elements` turns the recognised lines into elements:
1. Deskew: the median slope of the wider boxes' top edges is undone, so that rows stay rows on
   a page scanned a degree off.
2. Reading order: `ocrflux.layout.reading_order` (XY-cut; columns in order, table rows left to
   right), then boxes on one row are read as one line.
3. Paragraphs: a new paragraph starts when the line moves up or sideways (next column), when
   the distance between line centres exceeds `PARAGRAPH_PITCH` x the page's usual line pitch,
   when the line height changes by more than `HEIGHT_CHANGE`, or after a line that ends a
   sentence and stops well short of the next line's right edge (or before an indented line).
4. Headings: a paragraph of at most two lines, no lower than the page's median line, whose
   characters are `HEADING_PITCH` x wider than the page's median (width per character tracks
   the font size closely; box heights do not, the detector pads them by a near-constant margin).
Lines are joined as in the text layer (`ocrflux.layout.join_lines`: hyphenation undone).
"""

from __future__ import annotations

import io
import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from PIL import Image

from ocrflux.layout import (
    Box,
    ends_sentence,
    heading_element,
    hyphenated_words,
    join_lines,
    reading_order,
    rows_of,
)

__all__ = ["MODEL_ID", "OcrLine", "OcrReader", "bundled_models", "ocr_elements"]

DETECTION_MODEL = "PP-OCRv6_det_small.onnx"
RECOGNITION_MODEL = "PP-OCRv6_rec_small.onnx"
MODEL_ID = "rapidocr-3.10/PP-OCRv6-small"

PARAGRAPH_PITCH = 1.4
HEIGHT_CHANGE = 0.3
HEADING_PITCH = 1.3
#: Lines scoring lower are dropped (RapidOCR's own default is 0.5).
MIN_SCORE = 0.5
#: Long side / short side at most. RapidOCR scales the short side up to 736 px for detection,
#: so a 1024 x 1 strip (a 60000 x 10 image, rendered) would take gigabytes; a thinner image is
#: padded with white below or to the right, which keeps every box where it was.
MAX_ASPECT = 4


@dataclass(frozen=True, slots=True)
class OcrLine:
    """One recognised text line: its quadrilateral (4 x (x, y) pixels, clockwise from the
    top-left corner), text and confidence."""

    points: tuple[tuple[float, float], ...]
    text: str
    score: float


def bundled_models() -> tuple[Path, Path]:
    """The detection and recognition models inside the installed rapidocr wheel."""
    import rapidocr

    root = Path(rapidocr.__file__).parent / "models"
    paths = (root / DETECTION_MODEL, root / RECOGNITION_MODEL)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"rapidocr's bundled models are missing: {', '.join(missing)}")
    return paths


class OcrReader:
    """RapidOCR over PNG bytes; safe to call from several threads (one engine per thread).

    `threads` is the ONNX Runtime thread count of each call: the local engine runs one call
    per CPU with one thread each, which keeps every core busy without oversubscription.
    """

    def __init__(self, *, threads: int = 1) -> None:
        self._detector, self._recogniser = bundled_models()
        self._threads = threads
        self._local = threading.local()

    def _engine(self) -> Any:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            from rapidocr import RapidOCR

            engine = RapidOCR(
                params={
                    "Global.use_cls": False,
                    "Global.log_level": "warning",
                    "Global.model_root_dir": str(self._detector.parent),
                    "Det.model_path": str(self._detector),
                    "Rec.model_path": str(self._recogniser),
                    "EngineConfig.onnxruntime.intra_op_num_threads": self._threads,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                }
            )
            self._local.engine = engine
        return engine

    def read(self, png: bytes) -> list[OcrLine]:
        """The text lines of one page image, in RapidOCR's order."""
        with Image.open(io.BytesIO(png)) as image:
            rgb = _within_aspect(image.convert("RGB"))
        pixels = np.asarray(rgb)
        result = self._engine()(np.ascontiguousarray(pixels[:, :, ::-1]))  # RapidOCR wants BGR
        if result.boxes is None or result.txts is None:
            return []
        lines = []
        for box, text, score in zip(result.boxes, result.txts, result.scores, strict=True):
            if text.strip() and score >= MIN_SCORE:
                points = tuple((float(x), float(y)) for x, y in box)
                lines.append(OcrLine(points, text.strip(), float(score)))
        return lines


def _within_aspect(image: Image.Image) -> Image.Image:
    width, height = image.size
    padded = (
        max(width, math.ceil(height / MAX_ASPECT)),
        max(height, math.ceil(width / MAX_ASPECT)),
    )
    if padded == image.size:
        return image
    canvas = Image.new("RGB", padded, "white")
    canvas.paste(image, (0, 0))
    return canvas


def _skew(lines: Sequence[OcrLine]) -> float:
    """The page's skew in radians: median slope of the top edges of the wider boxes."""
    slopes = []
    for line in lines:
        (ax, ay), (bx, by) = line.points[0], line.points[1]
        width = bx - ax
        if width > 4 * abs(line.points[3][1] - ay) and width > 0:
            slopes.append(math.atan2(by - ay, width))
    return median(slopes) if slopes else 0.0


def _boxes(lines: Sequence[OcrLine]) -> list[Box]:
    angle = _skew(lines)
    cos, sin = math.cos(-angle), math.sin(-angle)
    boxes = []
    for line in lines:
        xs = [x * cos - y * sin for x, y in line.points]
        ys = [x * sin + y * cos for x, y in line.points]
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
    return boxes


@dataclass(slots=True)
class _Row:
    box: Box
    text: str
    char_pitch: float  # width per character of its boxes, less the detector's padding

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def centre(self) -> float:
        return (self.box[1] + self.box[3]) / 2


def _rows(lines: Sequence[OcrLine]) -> list[_Row]:
    """The lines in reading order, boxes on one row merged."""
    boxes = _boxes(lines)
    heights = [b[3] - b[1] for b in boxes]
    order = reading_order(boxes, min_column_gap=median(heights))
    rows: list[_Row] = []
    run: list[int] = []

    def flush() -> None:
        for members in rows_of(run, boxes):
            box = boxes[members[0]]
            for i in members[1:]:
                b = boxes[i]
                box = (min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3]))
            ink_width = sum(
                max(0.0, boxes[i][2] - boxes[i][0] - (boxes[i][3] - boxes[i][1])) for i in members
            )
            chars = sum(len(lines[i].text) for i in members)
            rows.append(_Row(box, " ".join(lines[i].text for i in members), ink_width / chars))
        run.clear()

    for index in order:
        if run:
            last = boxes[run[-1]]
            box = boxes[index]
            centre = (box[1] + box[3]) / 2
            same_row = last[1] <= centre <= last[3] and box[0] >= last[2] - 1
            if not same_row:
                flush()
        run.append(index)
    flush()
    return rows


def _breaks(previous: _Row, row: _Row, pitch: float) -> bool:
    if row.box[1] < previous.box[1] or row.box[0] > previous.box[2] or row.box[2] < previous.box[0]:
        return True  # moved up (next column) or sideways
    if row.centre - previous.centre > PARAGRAPH_PITCH * pitch:
        return True
    low, high = sorted((previous.height, row.height))
    if high > (1 + HEIGHT_CHANGE) * low:
        return True
    if ends_sentence(previous.text):
        height = median((previous.height, row.height))
        if previous.box[2] < row.box[2] - 3 * height or row.box[0] > previous.box[0] + height:
            return True
    return False


def ocr_elements(lines: Sequence[OcrLine]) -> list[str]:
    """OCRFlux elements (paragraphs, `# ` headings) from one page's recognised lines."""
    if not lines:
        return []
    rows = _rows(lines)
    body = median(row.height for row in rows)
    body_pitch = median(row.char_pitch for row in rows)
    pitches = [
        b.centre - a.centre
        for a, b in itertools.pairwise(rows)
        if 0.5 * body < b.centre - a.centre < 3 * body
    ]
    pitch = median(pitches) if pitches else 1.2 * body
    paragraphs: list[list[_Row]] = []
    for row in rows:
        if paragraphs and not _breaks(paragraphs[-1][-1], row, pitch):
            paragraphs[-1].append(row)
        else:
            paragraphs.append([row])
    known = hyphenated_words(" ".join(row.text for row in rows))
    elements = []
    for paragraph in paragraphs:
        text = join_lines([row.text for row in paragraph], lambda w: w.lower() in known)
        heading = (
            len(paragraph) <= 2
            and median(row.char_pitch for row in paragraph) >= HEADING_PITCH * body_pitch
            and median(row.height for row in paragraph) >= body
            and any(c.isalpha() for c in text)
        )
        elements.append(heading_element(text) if heading else text)
    return elements
