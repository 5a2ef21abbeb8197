"""The exceptions, where the code below the API has always imported them from (see cnnexp/errors.py)."""

from cnnexp.errors import (CnnexpError, ConfigError, DataError, Diverged, Interrupted, PeerLost, Pruned, RunError,
                           UserError, WeightsError)

__all__ = ["CnnexpError", "ConfigError", "DataError", "Diverged", "Interrupted", "PeerLost", "Pruned", "RunError",
           "UserError", "WeightsError"]
