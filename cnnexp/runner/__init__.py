"""The runner: a command run as a Hydra app (app.py), with where conf/ is and composing it (compose.py).

Importing it puts cnnexp's schemas in Hydra's ConfigStore and registers the resolvers that name run
folders: every composition goes through this package, Hydra launchers running jobs in other processes
import it with the job's function, and a process that never composes (the curves drawing process, a
script importing one module) does not pay for it (0.3 s of CPU).
"""

from cnnexp.schemas import register_schemas as _register_schemas
from cnnexp.utils import jobdirs as _jobdirs
from cnnexp.utils.runs import register_resolvers as _register_resolvers

_register_resolvers()
_jobdirs.register()
_register_schemas()
