"""The ``menjin`` command: composes the gate's (``daemon.cli``) and the station's commands."""
