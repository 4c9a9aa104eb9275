"""Deployment configuration: one TOML file per deployment under `sessions/`, validated with
pydantic so a bad file fails at start naming the file, the field and the problem. Secrets are
never in the TOML; the config names the environment variable or file that holds them.

May import: gateway.kraken.
"""

from gateway.config.loader import ConfigError, load_config
from gateway.config.model import (
    Config,
    GatewayConfig,
    OmsConfig,
    OmsSessionConfig,
    ScheduleConfig,
    SimulatorConfig,
    VenueConfig,
    VenueSessionConfig,
)
from gateway.config.strict import CredentialRef, StrictModel

__all__ = [
    "Config",
    "ConfigError",
    "CredentialRef",
    "GatewayConfig",
    "OmsConfig",
    "OmsSessionConfig",
    "ScheduleConfig",
    "SimulatorConfig",
    "StrictModel",
    "VenueConfig",
    "VenueSessionConfig",
    "load_config",
]
