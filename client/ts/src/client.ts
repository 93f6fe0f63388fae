// CredentialsClient: the sidecar's calls with client/SPEC.md's behaviour: a
// default deadline, wait-for-ready, UNAVAILABLE retried inside the deadline,
// failures as CredentialsError, account listing as pages, and the
// always-current credentials object.
import { setTimeout as sleep } from "node:timers/promises";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  type AccountInfo,
  CredentialsService,
  Environment,
  type GetCredentialsResponse,
  type RefreshTokenResponse,
  type ValidateAccountResponse,
  type WatchCredentialsResponse,
} from "./gen/pdsidecar/v1/credentials_pb.js";
import { CredentialsError, notConnected } from "./errors.js";
import { openChannel, type Channel, type TlsOptions } from "./transport.js";
import { RefreshableCredentials, type RefreshableOptions } from "./refreshable.js";

/** The default per-call deadline (client/SPEC.md section 1). */
export const DEFAULT_TIMEOUT_MS = 10_000;
// UNAVAILABLE the sidecar answered: retried like gRPC's retry policy (5 attempts,
// backoff 0.1 s doubling to 2 s). An absent sidecar without waitForReady: 3
// attempts, so the error comes well under 2 s (as in the Go library).
const MAX_ATTEMPTS = 5;
const MAX_UNCONNECTED_ATTEMPTS = 3;
const RETRY_BACKOFF_MS = 100;
const RETRY_BACKOFF_MAX_MS = 2_000;
// Waiting for the sidecar to become ready: reconnect backoff 100 ms to 1 s.
const READY_BACKOFF_MAX_MS = 1_000;

export interface ClientOptions extends TlsOptions {
  /** Sent on every call as "authorization: Bearer <token>" (never over plaintext off the machine). */
  apiToken?: string;
  /** The deadline of a call that gives none (default 10 s). */
  timeoutMs?: number;
  /**
   * On (the default), a call made while the sidecar is down or restarting waits
   * for it up to its deadline; off, it fails at once, UNAVAILABLE, with a hint.
   */
  waitForReady?: boolean;
}

export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Names what to fetch: an account's credentials for a source. */
export interface AccountRef {
  projectId: string;
  accountId: string;
  source: string;
  connection?: string;
  environment?: "production" | "development";
  externalUserId?: string;
  requiredFields?: string[];
  optionalFields?: string[];
}

/** Selects the accounts accountPages lists. */
export interface AccountQuery {
  projectId: string;
  environment?: "production" | "development";
  /** Only accounts of this source's app. */
  source?: string;
  externalUserId?: string;
  connection?: string;
  /** Accounts per page (0: the sidecar's default). */
  pageSize?: number;
  /** Where to start: a nextPageToken kept from before (the first page when absent). */
  pageToken?: string;
}

/** One consistent value of an account's credentials; frozen. */
export interface Credentials {
  readonly accessToken: string;
  /** Every field under Airweave names. */
  readonly fields: Readonly<Record<string, string>>;
  /** When the source token expires; undefined when Pipedream reports none. */
  readonly expiresAt?: Date;
  readonly account?: AccountInfo;
}

export function credentialsOf(resp: GetCredentialsResponse | WatchCredentialsResponse): Credentials {
  const fields = Object.freeze({ ...resp.credentials });
  const expiresAt = resp.expiresAt ? timestampDate(resp.expiresAt) : undefined;
  // Logged, printed or serialised, a value names its fields, never their values.
  const shown = () => `Credentials { fields: ${Object.keys(fields).sort().join(",")}, expiresAt: ${expiresAt?.toISOString()} }`;
  return Object.freeze({
    accessToken: fields["access_token"] ?? "",
    fields,
    expiresAt,
    account: resp.account,
    toString: shown,
    toJSON: shown,
    [Symbol.for("nodejs.util.inspect.custom")]: shown,
  });
}

function environment(name: string | undefined): Environment {
  if (name === undefined || name === "" || name === "production") return Environment.PRODUCTION;
  if (name === "development") return Environment.DEVELOPMENT;
  throw new TypeError(`environment must be "production" or "development", not ${JSON.stringify(name)}`);
}

function accountOf(ref: AccountRef) {
  return {
    account: {
      connection: ref.connection ?? "",
      projectId: ref.projectId,
      accountId: ref.accountId,
      environment: environment(ref.environment),
      externalUserId: ref.externalUserId ?? "",
    },
    source: ref.source,
    requiredFields: ref.requiredFields ?? [],
    optionalFields: ref.optionalFields ?? [],
  };
}

export class CredentialsClient {
  /** The generated Connect client, for what the library does not cover. */
  readonly raw: Client<typeof CredentialsService>;
  readonly target: string;
  readonly #channel: Channel;
  readonly #timeoutMs: number;
  readonly #waitForReady: boolean;

  /** A client for target: "host:port", or "unix:/path" for a Unix socket. Connects lazily. */
  constructor(target: string, options: ClientOptions = {}) {
    this.target = target;
    this.#channel = openChannel(target, options, options.apiToken);
    this.raw = createClient(CredentialsService, this.#channel.transport);
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#waitForReady = options.waitForReady ?? true;
  }

  /** Closes the HTTP/2 session; objects made from the client must be closed first. */
  close(): void {
    this.#channel.session.abort();
  }

  /**
   * Runs one unary call inside one deadline, retrying UNAVAILABLE (and, with
   * waitForReady, a sidecar not reachable yet) with backoff.
   */
  async #call<T>(rpc: (opts: CallOptions) => Promise<T>, opts: CallOptions = {}): Promise<T> {
    const started = Date.now();
    const deadline = started + (opts.timeoutMs ?? this.#timeoutMs);
    let backoff = RETRY_BACKOFF_MS;
    let lastConnectionError: string | undefined;
    for (let attempt = 1; ; attempt++) {
      let failure: CredentialsError;
      try {
        return await rpc({ timeoutMs: Math.max(1, deadline - Date.now()), signal: opts.signal });
      } catch (err) {
        failure = CredentialsError.from(err);
      }
      const unconnected = failure.connectionError !== undefined;
      if (unconnected) lastConnectionError = failure.connectionError;
      const waiting = unconnected && this.#waitForReady;
      const more =
        failure.code === Code.Unavailable &&
        !opts.signal?.aborted &&
        (waiting || attempt < (unconnected ? MAX_UNCONNECTED_ATTEMPTS : MAX_ATTEMPTS));
      const pause = Math.random() * backoff;
      if (more && Date.now() + pause >= deadline) {
        await sleep(Math.max(0, deadline - Date.now())); // the deadline, not earlier
      }
      if (!more || Date.now() >= deadline) {
        return Promise.reject(this.#failure(failure, started, deadline, lastConnectionError));
      }
      await sleep(pause);
      backoff = Math.min(backoff * 2, waiting ? READY_BACKOFF_MAX_MS : RETRY_BACKOFF_MAX_MS);
    }
  }

  /** The failure, with the connection hint when the call never reached the sidecar. */
  #failure(failure: CredentialsError, started: number, deadline: number, lastError?: string): CredentialsError {
    if (failure.reason !== undefined) return failure;
    const waited = Date.now() - started;
    const hint = (wfr: boolean) => notConnected(this.target, waited, lastError, this.#channel.tls, wfr);
    if (failure.code === Code.Unavailable && failure.connectionError !== undefined) {
      if (this.#waitForReady) {
        // The deadline passed while waiting for the sidecar: say so, as gRPC would.
        return new CredentialsError(Code.DeadlineExceeded, `deadline of ${deadline - started} ms exceeded`, {
          connectionError: lastError,
        }).withHint(hint(true));
      }
      return failure.withHint(hint(false));
    }
    if (failure.code === Code.DeadlineExceeded && lastError !== undefined) {
      return failure.withHint(hint(this.#waitForReady));
    }
    return failure;
  }

  /** The account's credentials for a source. */
  async getCredentials(ref: AccountRef, opts: CallOptions & { rejectedAccessToken?: string } = {}): Promise<Credentials> {
    const request = { ...accountOf(ref), rejectedAccessToken: opts.rejectedAccessToken ?? "" };
    return credentialsOf(await this.#call((o) => this.raw.getCredentials(request, o), opts));
  }

  /** Whether the account can serve the source; account problems come back as data. */
  validateAccount(ref: AccountRef, opts?: CallOptions): Promise<ValidateAccountResponse> {
    return this.#call((o) => this.raw.validateAccount(accountOf(ref), o), opts);
  }

  /** Refreshes a connection's Pipedream API token ("" is the default connection). */
  refreshToken(connection = "", force = false, opts?: CallOptions): Promise<RefreshTokenResponse> {
    return this.#call((o) => this.raw.refreshToken({ connection, force }, o), opts);
  }

  /**
   * The project's accounts a page at a time: each step fetches one page (its
   * own deadline); a failure throws at the step that fetched it.
   *
   *     for await (const page of client.accountPages({ projectId })) ...
   */
  async *accountPages(query: AccountQuery, opts?: CallOptions): AsyncGenerator<AccountInfo[], void, undefined> {
    const request = {
      connection: query.connection ?? "",
      projectId: query.projectId,
      environment: environment(query.environment),
      source: query.source ?? "",
      externalUserId: query.externalUserId ?? "",
      pageSize: query.pageSize ?? 0,
      pageToken: query.pageToken ?? "",
    };
    for (;;) {
      const resp = await this.#call((o) => this.raw.listAccounts(request, o), opts);
      yield resp.accounts;
      if (!resp.nextPageToken) return;
      request.pageToken = resp.nextPageToken;
    }
  }

  /** The raw WatchCredentials stream (no deadline; abort it with signal). Errors are CredentialsError. */
  async *watchCredentials(ref: AccountRef, opts: { signal?: AbortSignal } = {}): AsyncGenerator<Credentials, void, undefined> {
    try {
      for await (const resp of this.raw.watchCredentials(accountOf(ref), { signal: opts.signal })) {
        yield credentialsOf(resp);
      }
    } catch (err) {
      throw CredentialsError.from(err);
    }
  }

  /**
   * The always-current credentials object (client/SPEC.md section 5): resolves
   * once the first value is there (within the client's deadline, or until
   * options.signal aborts).
   */
  refreshableCredentials(ref: AccountRef, options: RefreshableOptions = {}): Promise<RefreshableCredentials> {
    return RefreshableCredentials.start(
      {
        name: `${ref.projectId}/${ref.accountId}`,
        open: (signal) => this.watchCredentials(ref, { signal }),
        refetch: (token, opts) => this.getCredentials(ref, { ...opts, rejectedAccessToken: token }),
        timeoutMs: this.#timeoutMs,
        unconnected: (failure, waitedMs) =>
          failure.withHint(notConnected(this.target, waitedMs, failure.connectionError, this.#channel.tls, true)),
      },
      options,
    );
  }
}
