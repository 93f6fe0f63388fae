"""pdsidecar: a gRPC sidecar that serves credentials held by Pipedream Connect."""

__version__ = "0.1.0"
