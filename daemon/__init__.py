"""menjin daemon: composes drivers, vision, access policy, doors, journal and uplink."""

__version__ = "0.1.0"
