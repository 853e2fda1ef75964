"""Configuration: the model, the design's defaults, loading and validation."""

from slipway.config.load import LoadedConfig, load_config, validate_config
from slipway.config.model import EnvironmentConfig, HostSpec, SlipwayConfig, parse_host

__all__ = [
    "EnvironmentConfig",
    "HostSpec",
    "LoadedConfig",
    "SlipwayConfig",
    "load_config",
    "parse_host",
    "validate_config",
]
