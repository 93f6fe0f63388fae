// The one error callers catch (client/SPEC.md section 2): the gRPC code, the
// ErrorInfo reason and metadata, RetryInfo's delay, BadRequest violations, and
// a hint naming the target when the call never reached the sidecar.
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";

/** The ErrorInfo domain of the sidecar's errors. */
export const DOMAIN = "pdsidecar";

/** The canonical gRPC code names, indexed by code (Connect's enum says "Canceled"). */
export const GRPC_CODE_NAMES: readonly string[] = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
  "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
  "UNAUTHENTICATED",
];

export interface FieldViolation {
  field: string;
  description: string;
}

interface Details {
  reason?: string;
  metadata?: Record<string, string>;
  retryAfterMs?: number;
  violations?: FieldViolation[];
  hint?: string;
  /** The low-level error a connection failed with (never a credential). */
  connectionError?: string;
}

/** Every failure of the library; it never holds a credential value. */
export class CredentialsError extends Error {
  override name = "CredentialsError";
  /** The gRPC status code (Connect's Code enum has the gRPC numbers). */
  readonly code: Code;
  /** The ErrorInfo reason ("ACCOUNT_DEAD", "RATE_LIMITED", ...); undefined when absent. */
  readonly reason?: string;
  readonly metadata: Record<string, string>;
  /** RetryInfo's delay in milliseconds; undefined when the sidecar sent none. */
  readonly retryAfterMs?: number;
  readonly violations: FieldViolation[];
  /** Set only when the call never reached the sidecar: the target and the likely cause. */
  readonly hint?: string;
  readonly connectionError?: string;
  /** The status message alone (message adds the code name, reason and hint). */
  readonly rawMessage: string;

  constructor(code: Code, rawMessage: string, details: Details = {}) {
    let text = `${codeName(code)}: ${rawMessage}`;
    if (details.reason) text += ` [${details.reason}]`;
    if (details.hint) text += ` (${details.hint})`;
    super(text);
    this.code = code;
    this.rawMessage = rawMessage;
    this.reason = details.reason;
    this.metadata = details.metadata ?? {};
    this.retryAfterMs = details.retryAfterMs;
    this.violations = details.violations ?? [];
    this.hint = details.hint;
    this.connectionError = details.connectionError;
  }

  /** Its canonical gRPC name, e.g. "FAILED_PRECONDITION". */
  get codeName(): string {
    return codeName(this.code);
  }

  /** Reads any error a call threw (a ConnectError, an abort, ...). */
  static from(err: unknown): CredentialsError {
    if (err instanceof CredentialsError) return err;
    const ce = ConnectError.from(err);
    const [info] = ce.findDetails(ErrorInfoSchema).filter((i) => i.domain === DOMAIN);
    const [retry] = ce.findDetails(RetryInfoSchema);
    const violations = ce
      .findDetails(BadRequestSchema)
      .flatMap((b) => b.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
    let retryAfterMs: number | undefined;
    if (retry?.retryDelay) {
      retryAfterMs = Number(retry.retryDelay.seconds) * 1000 + Math.round(retry.retryDelay.nanos / 1e6);
    }
    const connectionError = info ? undefined : connectionErrorOf(ce);
    // A connection that failed is UNAVAILABLE, as gRPC says it (Connect may say INTERNAL).
    return new CredentialsError(connectionError ? Code.Unavailable : ce.code, ce.rawMessage, {
      reason: info?.reason || undefined,
      metadata: info ? { ...info.metadata } : {},
      retryAfterMs,
      violations,
      connectionError,
    });
  }

  /** The same failure with a connection hint (and, optionally, another code). */
  withHint(hint: string, code: Code = this.code): CredentialsError {
    return new CredentialsError(code, this.rawMessage, {
      reason: this.reason,
      metadata: this.metadata,
      retryAfterMs: this.retryAfterMs,
      violations: this.violations,
      hint,
      connectionError: this.connectionError,
    });
  }
}

export function codeName(code: Code): string {
  return GRPC_CODE_NAMES[code] ?? String(code);
}

/**
 * The socket or TLS error under a ConnectError when the connection itself
 * failed (Connect wraps Node's error as the cause), else undefined.
 */
function connectionErrorOf(ce: ConnectError): string | undefined {
  if (ce.code !== Code.Unavailable && ce.code !== Code.Unknown && ce.code !== Code.Internal) {
    return undefined;
  }
  let cause: unknown = ce.cause;
  while (cause instanceof ConnectError) cause = cause.cause;
  // Node's socket and TLS errors carry a code (ECONNREFUSED, ENOENT, ERR_SSL_..., ...).
  const code = cause instanceof Error ? (cause as NodeJS.ErrnoException).code : undefined;
  if (!(cause instanceof Error) || typeof code !== "string") return undefined;
  return cause.message.includes(code) ? cause.message : `${code}: ${cause.message}`;
}

/** What a connection error most likely means, in words a person can act on. */
export function connectionAdvice(lastError: string, tls: boolean): string {
  const text = lastError.toLowerCase();
  const closed =
    text.includes("socket hang up") || text.includes("econnreset") || text.includes("closed");
  if (text.includes("econnrefused")) {
    return "nothing listens there: is 'pdsidecar serve' running on this address";
  }
  if (text.includes("http/1") || text.includes("protocol error")) {
    return "an HTTP/1 server answered (the metrics port?), not the sidecar's gRPC listener";
  }
  if (text.includes("certificate") && !text.includes("certificate required")) {
    return "the server certificate is not signed by the CA given as tlsCa (--tls-ca)";
  }
  if (text.includes("wrong version number") || text.includes("packet length too long")) {
    return "the listener is plaintext: drop the TLS options";
  }
  if (text.includes("certificate required") || text.includes("alert bad certificate")) {
    return "the listener wants a client certificate signed by its --tls-client-ca (tlsCert/tlsKey)";
  }
  if (closed && !tls) {
    return (
      "the server closed the connection at once: a TLS listener does that to plaintext " +
      "clients; pass its CA as tlsCa (--tls-ca)"
    );
  }
  if (closed) {
    return (
      "the server closed the connection during the TLS handshake: a listener started with " +
      "--tls-client-ca wants a client certificate (tlsCert/tlsKey)"
    );
  }
  if (text.includes("enoent")) return "no Unix socket at that path: is 'pdsidecar serve' listening there";
  if (text.includes("eacces")) return "the socket's file mode keeps this user out (see serve --socket-mode)";
  return "";
}

/** The hint of a call that failed because it never connected. */
export function notConnected(
  target: string,
  waitedMs: number,
  lastError: string | undefined,
  tls: boolean,
  waitForReady: boolean,
): string {
  const found = lastError || "none yet (still connecting: no answer from the address)";
  let text = waitForReady
    ? `waited ${waitedMs} ms for the sidecar at ${target} to become ready (waitForReady), ` +
      `but it never connected; last connection error: ${found}`
    : `could not connect to the sidecar at ${target}; last connection error: ${found}`;
  const advice = connectionAdvice(lastError ?? "", tls);
  if (advice) text += `; ${advice}`;
  if (waitForReady) text += ". Pass waitForReady: false to fail fast instead of waiting";
  return text;
}
