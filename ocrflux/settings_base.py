"""The base of every settings class of the project (here and in `streams/` and `connectors/`):
frozen, unknown variables ignored, an empty variable unset; our own unprefixed names also answer
to `OCRFLUX_<NAME>` (`prefixed`); secrets can come from files in `OCRFLUX_SECRETS_DIR`.

Kept apart from `ocrflux.settings` (the core's settings), which processes without the core (the
S3 connector, the SDK) do not need.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

__all__ = ["SECRETS_DIR_VARIABLE", "OcrfluxSettings", "prefixed"]

#: A folder with one file per variable (Docker and Kubernetes mount secrets so, in /run/secrets).
SECRETS_DIR_VARIABLE = "OCRFLUX_SECRETS_DIR"


def prefixed(name: str) -> AliasChoices:
    """An unprefixed variable of ours that also answers to `OCRFLUX_<NAME>`; when both are set,
    the prefixed one wins."""
    return AliasChoices(f"ocrflux_{name}", name)


class OcrfluxSettings(BaseSettings):
    """Frozen; unknown variables ignored; an empty variable means unset. Every field can also
    come from a file named like its variable in `OCRFLUX_SECRETS_DIR` (the environment wins)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_ignore_empty=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        folder = os.environ.get(SECRETS_DIR_VARIABLE)
        if folder:
            path = Path(folder).expanduser()
            if not path.is_dir():
                raise SettingsError(
                    f"{SECRETS_DIR_VARIABLE}={folder}: no such folder (name the folder that "
                    "holds one file per secret, e.g. /run/secrets, or unset it)"
                )
            file_secret_settings = SecretsSettingsSource(settings_cls, secrets_dir=path)
        return init_settings, env_settings, dotenv_settings, file_secret_settings
