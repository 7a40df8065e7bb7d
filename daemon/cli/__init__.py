"""The gate's command-line tools (typer sub-apps), kept apart from the runtime.

Each module registers one feature area's commands; :mod:`menjin.cli` composes them with the
station's into the ``menjin`` command.  CLI modules may import runtime modules, never the reverse
(an import-linter contract in ``pyproject.toml``).
"""
