// The always-current credentials object (client/SPEC.md section 5), in the
// shape of go-spiffe's X509Source: built by one call that resolves once the
// first value is in, kept current by a WatchCredentials stream reopened with
// backoff, read with no I/O, closed once.
import { setTimeout as sleep } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { CredentialsError } from "./errors.js";
import type { Credentials } from "./client.js";

/** reject() waits this long for a different value, by default. */
export const REJECT_TIMEOUT_MS = 30_000;
const BACKOFF_INITIAL_MS = 100;
const BACKOFF_MAX_MS = 5_000;
// A sidecar not reachable yet: retried like gRPC's reconnect backoff (up to 1 s),
// which is what wait-for-ready does in the other languages.
const UNCONNECTED_BACKOFF_MAX_MS = 1_000;
const RETRY_INFO_MAX_MS = 30_000;
const REMEMBERED_REJECTS = 8;

// A stream ending with one of these is opened again; any other code is the
// account's (or the caller's) problem and ends the watch.
const RECONNECT_CODES: ReadonlySet<Code> = new Set([
  Code.Unavailable, // sidecar restarting or stopping, Pipedream down
  Code.ResourceExhausted, // too many watchers, rate limited
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.Canceled, // by the server (we cancel only when closing)
]);

export interface RefreshableOptions {
  /** Aborting it closes the object (and rejects the construction if still waiting). */
  signal?: AbortSignal;
  /** Called after each change of value, or when an error ends the watch. */
  onUpdate?: () => void;
  /** The first reconnect pause and the most it grows to (default 100 ms, 5 s). */
  backoffMs?: { initial: number; max: number };
}

/** What the object needs from a client: open the stream, refetch rejecting a token. */
export interface Watch {
  name: string;
  open: (signal: AbortSignal) => AsyncIterable<Credentials>;
  refetch: (token: string, opts: { signal?: AbortSignal; timeoutMs?: number }) => Promise<Credentials>;
  timeoutMs: number;
  unconnected: (failure: CredentialsError, waitedMs: number) => CredentialsError;
}

type Snapshot = { value: Credentials; error?: undefined } | { value?: undefined; error: CredentialsError };

export class RefreshableCredentials {
  #snapshot: Snapshot | undefined;
  readonly #watch: Watch;
  readonly #options: RefreshableOptions;
  readonly #abort = new AbortController();
  #changed = signal();
  readonly #rejected: string[] = [];
  #lastRetry: CredentialsError | undefined;
  /** How many times the stream was opened again. */
  reconnects = 0;

  private constructor(watch: Watch, options: RefreshableOptions) {
    this.#watch = watch;
    this.#options = options;
  }

  static async start(watch: Watch, options: RefreshableOptions): Promise<RefreshableCredentials> {
    const self = new RefreshableCredentials(watch, options);
    const started = Date.now();
    if (options.signal?.aborted) self.close();
    options.signal?.addEventListener("abort", () => self.close(), { once: true });
    void self.#run();
    const timeout = AbortSignal.timeout(watch.timeoutMs);
    const gaveUp = new Promise<void>((resolve) => {
      timeout.addEventListener("abort", () => resolve(), { once: true });
      self.#abort.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    while (self.#snapshot === undefined && !timeout.aborted && !self.#abort.signal.aborted) {
      await Promise.race([self.#changed.promise, gaveUp]);
    }
    const snapshot = self.#snapshot;
    if (snapshot?.value !== undefined) return self;
    self.close();
    throw snapshot?.error ?? self.#noValue(Date.now() - started);
  }

  #noValue(waitedMs: number): CredentialsError {
    const last = this.#lastRetry;
    const within = `no credentials from the sidecar within ${waitedMs} ms`;
    if (this.#options.signal?.aborted) return new CredentialsError(Code.Canceled, `${within}: aborted`);
    if (last?.connectionError !== undefined) {
      return this.#watch.unconnected(new CredentialsError(Code.DeadlineExceeded, within, { connectionError: last.connectionError }), waitedMs);
    }
    if (last !== undefined) {
      return new CredentialsError(last.code, `${within}; last: ${last.rawMessage}`, {
        reason: last.reason,
        metadata: last.metadata,
        retryAfterMs: last.retryAfterMs,
      });
    }
    return new CredentialsError(Code.DeadlineExceeded, within);
  }

  #current(): Credentials {
    const snapshot = this.#snapshot;
    if (snapshot?.value === undefined) throw snapshot?.error ?? closedError();
    return snapshot.value;
  }

  /** The current access token; throws the error that ended the watch, if one did. */
  get accessToken(): string {
    return this.#current().accessToken;
  }

  /** The current value, every field from the same message. */
  get credentials(): Credentials {
    return this.#current();
  }

  get expiresAt(): Date | undefined {
    return this.#current().expiresAt;
  }

  /**
   * The source answered 401 with token: ask the sidecar for another value and
   * resolve once the object holds one that differs; reject with
   * DEADLINE_EXCEEDED after timeoutMs (default 30 s).
   */
  async reject(token: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Credentials> {
    const current = this.#current();
    if (current.accessToken !== token) return current; // already rotated past it
    const timeoutMs = opts.timeoutMs ?? REJECT_TIMEOUT_MS;
    const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(opts.signal ? [opts.signal] : [])]);
    const started = Date.now();
    this.#rejected.push(token);
    if (this.#rejected.length > REMEMBERED_REJECTS) this.#rejected.shift();
    const timedOut = () =>
      new CredentialsError(
        Code.DeadlineExceeded,
        `the source rejected the access token and the sidecar had no other within ${Date.now() - started} ms`,
      );
    let fresh: Credentials;
    try {
      fresh = await this.#watch.refetch(token, { signal, timeoutMs });
    } catch (err) {
      throw signal.aborted && !opts.signal?.aborted ? timedOut() : err;
    }
    if (fresh.accessToken !== token && this.#holds(token)) this.#install({ value: fresh });
    const gaveUp = new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    while (this.#holds(token) && !signal.aborted) {
      await Promise.race([this.#changed.promise, gaveUp]);
    }
    if (this.#holds(token)) throw timedOut();
    return this.#current();
  }

  /** Stops the stream; later reads throw CANCELLED. Idempotent. */
  close(): void {
    if (this.#abort.signal.aborted) return;
    this.#abort.abort();
    this.#install({ error: closedError() });
  }

  toString(): string {
    const state = this.#snapshot?.error ? `failed: ${this.#snapshot.error.codeName}` : "current";
    return `RefreshableCredentials(${this.#watch.name}, ${state})`;
  }

  #holds(token: string): boolean {
    return this.#snapshot?.value?.accessToken === token;
  }

  #install(snapshot: Snapshot): void {
    this.#snapshot = snapshot;
    const changed = this.#changed;
    this.#changed = signal();
    changed.resolve();
    this.#options.onUpdate?.();
  }

  // A token reject() was given, arriving late (sent before the refetch), must not win back.
  #offer(value: Credentials): void {
    const current = this.#snapshot;
    if (current?.error) return;
    const stale = this.#rejected.includes(value.accessToken);
    if (stale && current?.value && current.value.accessToken !== value.accessToken) return;
    this.#install({ value });
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    let delay = 0;
    while (!signal.aborted) {
      let failure: CredentialsError;
      try {
        for await (const value of this.#watch.open(signal)) {
          this.#offer(value);
          delay = 0;
        }
        failure = new CredentialsError(Code.Unavailable, "the sidecar ended the watch");
      } catch (err) {
        failure = CredentialsError.from(err);
      }
      if (signal.aborted) return;
      const pause = this.#reconnectDelay(failure, delay);
      if (pause === undefined) {
        this.#install({ error: failure });
        return;
      }
      this.#lastRetry = failure;
      delay = pause;
      this.reconnects++;
      try {
        await sleep(pause, undefined, { signal });
      } catch {
        return; // closed
      }
    }
  }

  /** The pause before opening the stream again; undefined when the failure ends the watch. */
  #reconnectDelay(failure: CredentialsError, previous: number): number | undefined {
    if (!RECONNECT_CODES.has(failure.code)) return undefined;
    const { initial, max } = this.#options.backoffMs ?? { initial: BACKOFF_INITIAL_MS, max: BACKOFF_MAX_MS };
    if (failure.connectionError !== undefined) {
      return Math.min(Math.max(previous * 2, initial), UNCONNECTED_BACKOFF_MAX_MS, max);
    }
    if (failure.reason === "SIDECAR_STOPPING") return initial; // the next sidecar is starting
    if (failure.retryAfterMs !== undefined) return Math.min(failure.retryAfterMs, RETRY_INFO_MAX_MS);
    return Math.min(Math.max(previous * 2, initial), max);
  }
}

/** A promise and the function that resolves it (Promise.withResolvers needs Node 22). */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function closedError(): CredentialsError {
  return new CredentialsError(Code.Canceled, "the refreshable credentials are closed");
}
