"""Client settings for any Kafka cluster: every librdkafka option, from three places.

Segue's own clients (producer, consumers, admin) all take their configuration from
``client_config``: the bootstrap servers plus the options of this deployment, merged in this
order (later wins):

1. the ``kafka:`` section of the config file (``security.protocol``, ``sasl.mechanism``,
   ``sasl.username``, ``sasl.password``, ``ssl.ca.location``, … as librdkafka names them);
2. ``SEGUE_KAFKA_<NAME>`` environment variables, the name upper-cased with dots as
   underscores (``SEGUE_KAFKA_SASL_PASSWORD``), so secrets need not be in a file;
3. ``--kafka-option key=value`` on the command line.

``SEGUE_BROKERS`` is the default of every ``--brokers``.

Example:
    >>> configure({"security.protocol": "SASL_SSL", "sasl.password": "s3cret"})
    >>> client_config("b1:9092")["security.protocol"]
    'SASL_SSL'
    >>> masked(client_config("b1:9092"))["sasl.password"]
    '***'
    >>> configure({})
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV_PREFIX = "SEGUE_KAFKA_"
SECRET_WORDS = ("password", "secret", "token", "sasl.oauthbearer.config", "ssl.key.pem",
                "ssl_key")
_options: dict[str, str] = {}


def option_name(env_name: str) -> str:
    """``SEGUE_KAFKA_SASL_USERNAME`` -> ``sasl.username``."""
    return env_name[len(ENV_PREFIX):].lower().replace("_", ".")


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {option_name(k): v for k, v in env.items() if k.startswith(ENV_PREFIX) and v}


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["security.protocol=SSL", …]`` -> a dict; raises ValueError naming a bad one."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--kafka-option {pair!r}: expected key=value, e.g. "
                             "security.protocol=SASL_SSL")
        out[key.strip()] = value
    return out


def configure(options: Mapping[str, object]) -> None:
    """Set this process's Kafka options (file section, then environment and command line
    already merged by the caller, see ``resolve``)."""
    _options.clear()
    _options.update({k: str(v).lower() if isinstance(v, bool) else str(v)
                     for k, v in options.items()})


def resolve(file_section: Mapping[str, object] | None, cli_pairs: list[str] | None,
            environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The deployment's options: the file's ``kafka:``, then ``SEGUE_KAFKA_*``, then
    ``--kafka-option``."""
    return {**(file_section or {}), **from_env(environ), **parse_options(cli_pairs or [])}


def client_config(brokers: str, **overrides: object) -> dict:
    """A librdkafka configuration: bootstrap servers, the client's own settings
    (``overrides``), then this deployment's options (security and the like win)."""
    return {"bootstrap.servers": brokers, **overrides, **_options}


def is_secret(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in SECRET_WORDS)


def masked(config: Mapping[str, object]) -> dict:
    """``config`` with every secret value shown as ``***`` (for printing)."""
    return {k: ("***" if is_secret(k) and v not in (None, "") else v) for k, v in config.items()}
