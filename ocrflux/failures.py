"""How a command ends on an expected failure: one line on stderr saying what is wrong and how to
fix it, and its exit code (`ocrflux.exit_codes`), instead of a traceback.

    invalid settings (a settings object's ValidationError,    2  the variable, its value and
      pydantic-settings' SettingsError)                           what it accepts
    no Kafka configured (`KafkaNotConfigured`)                2  how to name or start a broker
    Kafka unreachable or refusing (`KafkaClientError`)        1
    the local broker failing (`BrokerError`)                  1
    a document error outside a result (`OcrfluxError`)        1  its code and message
    the operating system's (`OSError`: a file or folder that  1
      cannot be read or written, a port in use)
    KeyboardInterrupt                                         130

Anything else is a bug and keeps its traceback. `--debug` or `OCRFLUX_LOG_LEVEL=debug` shows the
traceback of an expected failure too. Error classes outside the core are looked up among the
modules already loaded, so a command that never loads Kafka code does not load it here either.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import SettingsError

from ocrflux.errors import OcrfluxError
from ocrflux.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from ocrflux.filenames import display_name
from ocrflux.settings_base import OcrfluxSettings

__all__ = ["Failure", "explain", "run_guarded", "validation_problems"]


@dataclass(frozen=True)
class Failure:
    code: int
    message: str


def run_guarded(prog: str, main: Callable[[], int], *, debug: bool = False) -> int:
    """`main()`'s exit code; an expected failure ends as one line on stderr and its code."""
    try:
        return main()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        failure = explain(exc)
        if failure is None:
            raise
        print(f"{prog}: error: {failure.message}", file=sys.stderr)
        if debug or logging.getLogger().isEnabledFor(logging.DEBUG):
            traceback.print_exception(exc)
        sys.stderr.flush()
        return failure.code


def explain(exc: BaseException) -> Failure | None:
    """The exit code and message of an expected failure; None for anything else (a bug)."""
    if isinstance(exc, ValidationError) and _settings_class(exc.title) is not None:
        return Failure(EXIT_USAGE, f"invalid setting {validation_problems(exc)}")
    if isinstance(exc, SettingsError):
        return Failure(EXIT_USAGE, f"invalid settings: {exc}")
    if _is_a(exc, "streams.kafka", "KafkaNotConfigured"):
        return Failure(EXIT_USAGE, str(exc))
    if _is_a(exc, "deploy.common", "BrokerError"):
        return Failure(EXIT_FAILED, str(exc))
    if _is_a(exc, "streams.kafka", "KafkaClientError"):
        return Failure(
            EXIT_FAILED,
            f"{exc} (is Kafka running there? KAFKA_BOOTSTRAP_SERVERS names the brokers)",
        )
    if isinstance(exc, OcrfluxError):
        return Failure(EXIT_FAILED, f"{exc.code}: {exc.message}")
    if isinstance(exc, OSError):
        return Failure(EXIT_FAILED, _os_problem(exc))
    return None


def _is_a(exc: BaseException, module_name: str, class_name: str) -> bool:
    module = sys.modules.get(module_name)  # a module never loaded raised nothing
    return module is not None and isinstance(exc, getattr(module, class_name))


def _os_problem(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    if exc.filename is not None:
        return f"{display_name(os.fsdecode(exc.filename))}: {what}"
    return what


# --- validation errors ---------------------------------------------------------------------


def validation_problems(exc: ValidationError) -> str:
    """`NAME='value': what it accepts` per problem, `; `-separated. For a settings object NAME is
    the environment variable that was set (`OCRFLUX_MAX_PAGES` or `MAX_PAGES`); a secret's
    value is never shown."""
    model = _settings_class(exc.title)
    problems = []
    for error in exc.errors():
        loc = error["loc"]
        name, secret = ".".join(map(str, loc)), False
        if model is not None:
            key = str(loc[0]) if loc else ""
            field = _field_of(model, key)
            name = _variable(model, field, key)
            secret = field is not None and _is_secret(model, field)
        message = error["msg"].removeprefix("Value error, ")
        if not loc:  # the model's own check: its message says it all
            problems.append(message)
        elif error["type"] == "missing" or secret:
            problems.append(f"{name}: {message}")
        else:
            problems.append(f"{name}={_shown(error['input'])}: {message}")
    return "; ".join(problems)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _settings_class(title: str) -> type[OcrfluxSettings] | None:
    for cls in _subclasses(OcrfluxSettings):
        if cls.__name__ == title:
            return cls
    return None


def _subclasses(cls: type[OcrfluxSettings]) -> Iterable[type[OcrfluxSettings]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def _choices(model: type[BaseModel], field: str) -> list[str]:
    """A field's environment names, in the order they are looked up (the first set one wins)."""
    alias = model.model_fields[field].validation_alias
    if alias is None:
        return [field]
    names = getattr(alias, "choices", [alias])
    return [str(name) for name in names]


def _field_of(model: type[BaseModel], key: str) -> str | None:
    for field in model.model_fields:
        if key == field or key in _choices(model, field):
            return field
    return None


def _variable(model: type[BaseModel], field: str | None, key: str) -> str:
    if not key:
        return "settings"
    names = _choices(model, field) if field is not None else [key]
    present = {name.lower() for name in os.environ}
    for name in names:
        if name.lower() in present:
            return name.upper()
    return names[0].upper()


def _is_secret(model: type[BaseModel], field: str) -> bool:
    annotation = model.model_fields[field].annotation
    return SecretStr in getattr(annotation, "__args__", ()) or annotation is SecretStr
