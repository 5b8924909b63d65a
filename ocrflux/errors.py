"""One exception tree with stable error codes.

    OcrfluxError                      code            HTTP
    ├── InputError                                     422
    │   ├── EmptyInput                "empty"          400
    │   ├── UnsupportedType           "unsupported_type" 400
    │   ├── CorruptInput              "corrupt"        422
    │   │   └── DamagedPage           "damaged_page"   422
    │   ├── EncryptedInput            "encrypted"      422
    │   ├── TooLarge                  "too_large"      413
    │   ├── TooManyPages              "too_many_pages" 422
    │   └── FetchFailed               "fetch_failed"   400
    └── ModelError                    "model_error"    502
        ├── ModelUnavailable          "vllm_unavailable" 503
        └── TaskFailed                "task_failed"    502

Each class maps to one result `error.code` and one HTTP status. Errors raised by libraries below
us are translated at the boundary with `raise ... from exc`.
"""

from __future__ import annotations

from typing import ClassVar


class OcrfluxError(Exception):
    """Base of every error this project raises on purpose."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(OcrfluxError):
    """The document itself cannot be converted; retrying will not help."""

    code = "invalid_input"
    http_status = 422


class EmptyInput(InputError):
    code = "empty"
    http_status = 400


class UnsupportedType(InputError):
    code = "unsupported_type"
    http_status = 400


class CorruptInput(InputError):
    code = "corrupt"


class DamagedPage(CorruptInput):
    """A page of a damaged, repaired PDF that came out blank: its content was probably lost."""

    code = "damaged_page"


class EncryptedInput(InputError):
    code = "encrypted"


class TooLarge(InputError):
    code = "too_large"
    http_status = 413


class TooManyPages(InputError):
    code = "too_many_pages"


class FetchFailed(InputError):
    code = "fetch_failed"
    http_status = 400


class ModelError(OcrfluxError):
    """The recognition backend failed; the same input may succeed later."""

    code = "model_error"
    http_status = 502


class ModelUnavailable(ModelError):
    code = "vllm_unavailable"
    http_status = 503


class TaskFailed(ModelError):
    """A model task used up every attempt without a valid answer."""

    code = "task_failed"


ERROR_CLASSES: dict[str, type[OcrfluxError]] = {
    cls.code: cls
    for cls in (
        OcrfluxError,
        InputError,
        EmptyInput,
        UnsupportedType,
        CorruptInput,
        DamagedPage,
        EncryptedInput,
        TooLarge,
        TooManyPages,
        FetchFailed,
        ModelError,
        ModelUnavailable,
        TaskFailed,
    )
}
