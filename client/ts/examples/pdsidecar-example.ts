// pdsidecar-example calls the pdsidecar sidecar through @pdsidecar/client and
// prints one line per answer, in the format every language's example shares:
//
//   credentials access_token=<token> fields=<names,...>
//   valid=<true|false> problems=<REASON,...>
//   refreshed=<true|false> expires_at=<RFC 3339, UTC>
//   watch access_token=<token> expires_at=<RFC 3339, UTC>
//   error code=<GRPC_CODE> reason=<ErrorInfo reason or ->
//
// A call the sidecar answers with a retry delay (RetryInfo) is tried again
// after it, up to --attempts times. watch holds the always-current object
// (refreshableCredentials) and prints its first value and each new one
// (--count N: stop after N lines); the library reconnects across restarts.
//
// Usage (flags fall back to PDSIDECAR_TARGET, default 127.0.0.1:50051,
// PDSIDECAR_PROJECT, PDSIDECAR_ACCOUNT, PDSIDECAR_SOURCE, PDSIDECAR_CONNECTION):
//   node dist/examples/pdsidecar-example.js [--target T] {get|validate|refresh|watch} [flags]
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import {
  CredentialsClient,
  CredentialsError,
  Reason,
  type AccountRef,
  type RefreshableCredentials,
} from "../src/index.js";

const USAGE = "usage: pdsidecar-example [--target HOST:PORT] {get|validate|refresh|watch} [flags]";
const HELP = `${USAGE}
commands: get, validate, refresh, watch; flags:
  --target HOST:PORT   the sidecar, or unix:/path (default: $PDSIDECAR_TARGET, else 127.0.0.1:50051)
  --project ID, --account ID, --source NAME, --connection NAME
  --force              refresh: refresh even when not yet due
  --attempts N         attempts per call when the sidecar sends RetryInfo (default 3)
  --count N            watch: stop after N values (default 0: never)`;

const env = (name: string, fallback = "") => process.env[name] || fallback;
const { values: o, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: "string", default: env("PDSIDECAR_TARGET", "127.0.0.1:50051") },
    project: { type: "string", default: env("PDSIDECAR_PROJECT") },
    account: { type: "string", default: env("PDSIDECAR_ACCOUNT") },
    source: { type: "string", default: env("PDSIDECAR_SOURCE") },
    connection: { type: "string", default: env("PDSIDECAR_CONNECTION", "default") },
    force: { type: "boolean", default: false },
    attempts: { type: "string", default: "3" },
    count: { type: "string", default: "0" },
    help: { type: "boolean", short: "h", default: false },
  },
});
const rfc3339 = (d: Date | undefined) => (d ? d.toISOString().replace(/\.\d+Z$/, "Z") : "");

// The library leaves retry delays to the caller (client/SPEC.md section 3).
async function withRetry<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const e = CredentialsError.from(err);
      if (e.retryAfterMs === undefined || attempt >= Number(o.attempts)) throw e;
      console.error(`retrying in ${(e.retryAfterMs / 1000).toFixed(3)}s: code=${e.codeName} reason=${e.reason ?? "-"}`);
      await sleep(e.retryAfterMs);
    }
  }
}

async function run(client: CredentialsClient, command: string): Promise<void> {
  const ref: AccountRef = { projectId: o.project, accountId: o.account, source: o.source, connection: o.connection };
  if (command === "get") {
    const c = await withRetry(() => client.getCredentials(ref));
    console.log(`credentials access_token=${c.accessToken} fields=${Object.keys(c.fields).sort().join(",")}`);
  } else if (command === "validate") {
    const r = await withRetry(() => client.validateAccount(ref));
    console.log(`valid=${r.valid} problems=${r.problems.map((p) => Reason[p.reason].replace(/^REASON_/, "")).join(",")}`);
  } else if (command === "refresh") {
    const r = await withRetry(() => client.refreshToken(o.connection, o.force));
    const expires = r.expiresAt ? new Date(Number(r.expiresAt.seconds) * 1000) : undefined;
    console.log(`refreshed=${r.refreshed} expires_at=${rfc3339(expires)}`);
  } else if (command === "watch") {
    let printed = 0;
    let done = (): void => undefined;
    let fail = (_: unknown): void => undefined;
    const finished = new Promise<void>((resolve, reject) => ((done = resolve), (fail = reject)));
    let last = "";
    let creds: RefreshableCredentials | undefined;
    const show = () => {
      if (!creds) return; // still starting: shown below
      const value = creds.credentials; // throws the error that ended the watch
      if (value.accessToken === last) return;
      last = value.accessToken;
      console.log(`watch access_token=${value.accessToken} expires_at=${rfc3339(value.expiresAt)}`);
      if (Number(o.count) > 0 && ++printed >= Number(o.count)) done();
    };
    creds = await client.refreshableCredentials(ref, {
      onUpdate: () =>
        queueMicrotask(() => {
          try {
            show();
          } catch (err) {
            fail(err);
          }
        }),
    });
    show();
    await finished;
    creds.close();
  } else {
    throw new TypeError(`unknown command "${command}"`);
  }
}

async function main(): Promise<number> {
  if (o.help) return (console.log(HELP), 0);
  if (positionals.length !== 1) return (console.error(`pdsidecar-example: one command expected\n${USAGE}`), 2);
  const client = new CredentialsClient(o.target, { waitForReady: false });
  try {
    await run(client, positionals[0]);
    return 0;
  } catch (err) {
    if (err instanceof TypeError) return (console.error(`pdsidecar-example: ${err.message}\n${USAGE}`), 2);
    const e = CredentialsError.from(err);
    console.log(`error code=${e.codeName} reason=${e.reason ?? "-"}`);
    console.error(`message: ${e.message}`);
    for (const v of e.violations) console.error(`violation: ${v.field}: ${v.description}`);
    return 1;
  } finally {
    client.close();
  }
}

main().then((code) => process.exit(code));
