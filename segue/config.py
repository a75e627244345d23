"""Reading settings from a YAML file (the app shell); the settings themselves are
``models.settings``."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from models.settings import Settings
from models.validation import explain


class ConfigError(Exception):
    """A configuration file that cannot be used; the message says where and why."""


def load_settings(path: str | Path | None = None, **overrides: object) -> Settings:
    """Read settings from a YAML file (or defaults), then apply non-None ``overrides``."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError as e:
            raise ConfigError(f"{p}: no such file") from e
        except OSError as e:
            raise ConfigError(f"{p}: cannot be read ({e.strerror})") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        lines = [f"{path or 'settings'}: invalid configuration"]
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"])
            lines.append(f"  {loc}: {explain(err)}")
        raise ConfigError("\n".join(lines)) from e
