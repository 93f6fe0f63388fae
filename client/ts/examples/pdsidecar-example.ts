// pdsidecar-example calls the pdsidecar CredentialsService from Node and
// prints one line per answer, in the format every language's example shares:
//
//   credentials access_token=<token> fields=<names,...>
//   valid=<true|false> problems=<REASON,...>
//   refreshed=<true|false> expires_at=<RFC 3339, UTC>
//   watch access_token=<token> expires_at=<RFC 3339, UTC>
//   error code=<GRPC_CODE> reason=<ErrorInfo reason or ->
//
// A failed call's ErrorInfo reason and RetryInfo come from the google.rpc.Status
// in the grpc-status-details-bin trailer; a call with RetryInfo is retried after
// that delay, up to --attempts times. Calls without RetryInfo are not retried.
//
// watch opens WatchCredentials and prints a line for the first value and for
// every rotation after it (--count N: stop after N lines). A stream ending
// UNAVAILABLE (the sidecar restarting) is opened again; any other error ends it.
//
// Usage (flags fall back to PDSIDECAR_TARGET, default 127.0.0.1:50051,
// PDSIDECAR_PROJECT, PDSIDECAR_ACCOUNT, PDSIDECAR_SOURCE, PDSIDECAR_CONNECTION):
//   node dist/examples/pdsidecar-example.js [--target HOST:PORT] get      --project P --account A --source S
//   node dist/examples/pdsidecar-example.js [--target HOST:PORT] validate --project P --account A --source S
//   node dist/examples/pdsidecar-example.js [--target HOST:PORT] refresh  [--connection C] [--force]
//   node dist/examples/pdsidecar-example.js [--target HOST:PORT] watch    --project P --account A --source S [--count N]
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  type AccountRef,
  AccountRefSchema,
  type CredentialsClient,
  Reason,
  createCredentialsClient,
  sidecarError,
} from "../src/index.js";

const CALL_TIMEOUT_MS = 10_000;
const MAX_RETRY_DELAY_MS = 30_000;
const USAGE =
  "usage: pdsidecar-example [--target HOST:PORT] {get|validate|refresh|watch} [flags]";

const HELP = `${USAGE}
commands: get, validate, refresh, watch; flags:
  --target HOST:PORT   the sidecar (default: $PDSIDECAR_TARGET, else 127.0.0.1:50051)
  --project ID         Pipedream project id, proj_... ($PDSIDECAR_PROJECT)
  --account ID         connected account id, apn_... ($PDSIDECAR_ACCOUNT)
  --source NAME        source short name, e.g. notion ($PDSIDECAR_SOURCE)
  --connection NAME    connection name (default: $PDSIDECAR_CONNECTION, else default)
  --force              refresh: refresh even when not yet due
  --attempts N         attempts per call when the sidecar sends RetryInfo (default 3)
  --count N            watch: stop after N values (default 0: never)
  -h, --help           this help`;

class UsageError extends Error {}
class HelpRequested extends Error {}

function options() {
  const env = (name: string, fallback = "") => process.env[name] || fallback;
  const { values, positionals } = parseArgs({
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
  if (values.help) throw new HelpRequested();
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length ? "one command expected" : "missing command");
  }
  return {
    command: positionals[0],
    ...values,
    attempts: Math.max(1, Number(values.attempts) || 1),
    count: Math.max(0, Number(values.count) || 0),
  };
}

type Options = ReturnType<typeof options>;

// Runs one RPC with a deadline, retrying after the RetryInfo delay.
async function call<T>(o: Options, rpc: (opts: { timeoutMs: number }) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await rpc({ timeoutMs: CALL_TIMEOUT_MS });
    } catch (err) {
      const e = sidecarError(err);
      if (e.retryDelayMs === undefined || attempt >= o.attempts) throw err;
      const delay = Math.min(e.retryDelayMs, MAX_RETRY_DELAY_MS);
      console.error(
        `retrying in ${(delay / 1000).toFixed(3)}s: code=${e.codeName} reason=${e.reason ?? "-"} (attempt ${attempt} of ${o.attempts})`,
      );
      await sleep(delay);
    }
  }
}

function rfc3339(ts: Timestamp | undefined): string {
  return ts ? timestampDate(ts).toISOString().replace(/\.\d+Z$/, "Z") : "";
}

async function run(o: Options, client: CredentialsClient): Promise<void> {
  const account = create(AccountRefSchema, {
    connection: o.connection,
    projectId: o.project,
    accountId: o.account,
  });
  switch (o.command) {
    case "get": {
      const resp = await call(o, (opts) =>
        client.getCredentials({ account, source: o.source }, opts),
      );
      const fields = Object.keys(resp.credentials).sort();
      console.log(
        `credentials access_token=${resp.credentials["access_token"] ?? ""} fields=${fields.join(",")}`,
      );
      return;
    }
    case "validate": {
      const resp = await call(o, (opts) =>
        client.validateAccount({ account, source: o.source }, opts),
      );
      const problems = resp.problems.map((p) => Reason[p.reason].replace(/^REASON_/, ""));
      console.log(`valid=${resp.valid} problems=${problems.join(",")}`);
      return;
    }
    case "refresh": {
      const resp = await call(o, (opts) =>
        client.refreshToken({ connection: o.connection, force: o.force }, opts),
      );
      console.log(`refreshed=${resp.refreshed} expires_at=${rfc3339(resp.expiresAt)}`);
      return;
    }
    case "watch":
      return watch(o, client, account);
    default:
      throw new UsageError(`unknown command "${o.command}"`);
  }
}

// Prints every value of the account's credentials as the sidecar pushes it.
// The stream has no deadline: it lives as long as the sync does.
async function watch(
  o: Options,
  client: CredentialsClient,
  account: AccountRef,
): Promise<void> {
  let printed = 0;
  for (;;) {
    try {
      for await (const resp of client.watchCredentials({ account, source: o.source })) {
        console.log(
          `watch access_token=${resp.credentials["access_token"] ?? ""} expires_at=${rfc3339(resp.expiresAt)}`,
        );
        if (o.count > 0 && ++printed >= o.count) return;
      }
    } catch (err) {
      const e = sidecarError(err);
      if (e.code !== Code.Unavailable) throw err;
      console.error(`stream ended UNAVAILABLE (reason=${e.reason ?? "-"}); reconnecting`);
    }
    await sleep(100);
  }
}

async function main(): Promise<number> {
  let o: Options;
  try {
    o = options();
    return await run(o, createCredentialsClient(o.target)).then(() => 0);
  } catch (err) {
    if (err instanceof HelpRequested) {
      console.log(HELP);
      return 0;
    }
    const parseError =
      err instanceof Error && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS");
    if (err instanceof UsageError || parseError) {
      console.error(`pdsidecar-example: ${err.message}\n${USAGE}`);
      return 2;
    }
    const e = sidecarError(err);
    console.log(`error code=${e.codeName} reason=${e.reason ?? "-"}`);
    console.error(`message: ${e.message}`);
    for (const v of e.violations) console.error(`violation: ${v}`);
    return 1;
  }
}

// Exit explicitly: an idle HTTP/2 session would otherwise keep Node alive.
main().then((code) => process.exit(code));
