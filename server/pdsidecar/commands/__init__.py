"""Subcommands of ``pdsidecar``: each module has ``add_parser(subparsers)``, whose
parser sets ``run`` to an ``async (args) -> exit code`` function."""
