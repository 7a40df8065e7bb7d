"""Reading an installer's YAML file safely, with positions and problems in plain words.

Shared by the gate's config (``daemon/configfile.py``) and the station's (``station/config.py``),
which may not import each other.  :func:`parse_yaml` refuses what would hang or crash a loader
(alias bombs, deep nesting, control characters, numbers longer than Python converts) and explains
syntax errors the way an installer sees the file; :func:`expand_env` fills in ``${VAR:-default}``
and remembers which variable each value came from.
"""

from yamlconfig.env import EnvUse, expand_env
from yamlconfig.parse import MAX_DEPTH, MAX_NODES, MAX_NUMBER_DIGITS, parse_yaml, read_yaml
from yamlconfig.problem import Problem, ProblemError

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_NUMBER_DIGITS",
    "EnvUse",
    "Problem",
    "ProblemError",
    "expand_env",
    "parse_yaml",
    "read_yaml",
]
