"""Small file helpers shared by every layer."""

import json
import os
from pathlib import Path


def write_json_atomic(obj, path: Path) -> None:
    """Write JSON under a temporary name, then rename: a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)
