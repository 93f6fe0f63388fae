// @pdsidecar/client: the pdsidecar client library (client/SPEC.md) over
// Connect's gRPC transport for Node: CredentialsClient, CredentialsError and
// the always-current RefreshableCredentials. The generated pdsidecar.v1 and
// google.rpc messages are exported too, for what the library does not cover.
export * from "./gen/pdsidecar/v1/credentials_pb.js";
export * from "./gen/google/rpc/error_details_pb.js";
export {
  CredentialsClient,
  DEFAULT_TIMEOUT_MS,
  type AccountQuery,
  type AccountRef,
  type CallOptions,
  type ClientOptions,
  type Credentials,
} from "./client.js";
export { CredentialsError, DOMAIN, GRPC_CODE_NAMES, codeName, type FieldViolation } from "./errors.js";
export { RefreshableCredentials, REJECT_TIMEOUT_MS, type RefreshableOptions } from "./refreshable.js";
export type { Pem, TlsOptions } from "./transport.js";
