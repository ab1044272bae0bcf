"""The one exception every layer raises for bad input (a leaf module: imports nothing of jumpsim)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad configuration value or input file; ``str()`` is one line naming the key."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)
