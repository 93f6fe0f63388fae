"""Reading settings: TOML files, environment variables and listen addresses, into
the value types of :mod:`pdsidecar.settings`."""
