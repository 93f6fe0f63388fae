// @pdsidecar/client: the generated pdsidecar.v1 messages and service
// (protobuf-es), the google.rpc error details the sidecar sends, and two small
// helpers: a client over Connect's gRPC transport for Node, and the reading of
// a failed call's rich error (code, ErrorInfo reason, RetryInfo delay,
// BadRequest violations).
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { CredentialsService } from "./gen/pdsidecar/v1/credentials_pb.js";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";

export * from "./gen/pdsidecar/v1/credentials_pb.js";
export * from "./gen/google/rpc/error_details_pb.js";

export type CredentialsClient = Client<typeof CredentialsService>;

/** A CredentialsService client speaking gRPC (HTTP/2, plaintext) to HOST:PORT. */
export function createCredentialsClient(target: string): CredentialsClient {
  const baseUrl = /^https?:\/\//.test(target) ? target : `http://${target}`;
  return createClient(CredentialsService, createGrpcTransport({ baseUrl }));
}

/** The canonical gRPC code names, indexed by code (Connect's enum says "Canceled"). */
export const GRPC_CODE_NAMES: readonly string[] = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
  "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
  "UNAUTHENTICATED",
];

export interface SidecarError {
  /** The gRPC status code, e.g. Code.FailedPrecondition. */
  code: Code;
  /** Its canonical name, e.g. "FAILED_PRECONDITION". */
  codeName: string;
  /** The ErrorInfo reason, e.g. "CREDENTIALS_NOT_AVAILABLE"; undefined when absent. */
  reason?: string;
  /** ErrorInfo metadata (account, connection, missing fields; never a credential). */
  metadata: Record<string, string>;
  /** RetryInfo's delay in milliseconds; undefined when the call should not be retried. */
  retryDelayMs?: number;
  /** BadRequest field violations as "field: description". */
  violations: string[];
  message: string;
}

/** Reads a failed call's status and the google.rpc details from its trailers. */
export function sidecarError(err: unknown): SidecarError {
  const ce = ConnectError.from(err);
  const [info] = ce.findDetails(ErrorInfoSchema);
  const [retry] = ce.findDetails(RetryInfoSchema);
  const violations = ce
    .findDetails(BadRequestSchema)
    .flatMap((b) => b.fieldViolations.map((v) => `${v.field}: ${v.description}`));
  let retryDelayMs: number | undefined;
  if (retry?.retryDelay) {
    retryDelayMs = Number(retry.retryDelay.seconds) * 1000 + retry.retryDelay.nanos / 1e6;
  }
  return {
    code: ce.code,
    codeName: GRPC_CODE_NAMES[ce.code] ?? String(ce.code),
    reason: info?.reason,
    metadata: info?.metadata ?? {},
    retryDelayMs,
    violations,
    message: ce.rawMessage,
  };
}
