"""Settings and other process-wide configuration."""

from .config import Settings, get_settings

__all__ = ["Settings", "get_settings"]
