"""cnnexp: config-driven CNN image-classification experiments."""

__version__ = "0.1.0"

from cnnexp.schemas import register_schemas as _register_schemas
from cnnexp.utils import jobdirs as _jobdirs
from cnnexp.utils.runs import register_resolvers as _register_resolvers

# Registered on import so that Hydra launchers running jobs in other processes resolve run folders and
# find the config schemas too.
_register_resolvers()
_jobdirs.register()
_register_schemas()
