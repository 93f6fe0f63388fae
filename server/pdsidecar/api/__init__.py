"""The gRPC face: the servicer, request validation, conversion to protobuf, errors to
statuses, and the per-call wrapping (request ids, access checks, counting)."""
