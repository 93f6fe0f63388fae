// The TypeScript driver of the conformance suite (tests/conformance,
// client/SPEC.md): the scenarios get, list, error, hold, reject and bench on
// @pdsidecar/client alone.
//
//   node dist/conformance/driver.js SCENARIO --target T [flags]
//
// Each stdout line is one JSON object, the last one the result; tokens are
// printed only as fingerprints (the first 12 hex characters of their SHA-256).
// Exit 0 whenever the scenario ran to its end, even if it observed an error
// (that is data); 2 for bad flags.
import { createHash } from "node:crypto";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { setTimeout as sleep } from "node:timers/promises";
import {
  CredentialsClient,
  CredentialsError,
  type AccountRef,
  type RefreshableCredentials,
} from "../src/index.js";

type Result = Record<string, unknown>;
type Args = ReturnType<typeof parse>;

const fp = (token: string) => createHash("sha256").update(token, "utf8").digest("hex").slice(0, 12);
const emit = (line: Result) => process.stdout.write(`${JSON.stringify(line)}\n`);

function parse(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      target: { type: "string" },
      token: { type: "string" },
      ca: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      "server-name": { type: "string" },
      project: { type: "string", default: "" },
      environment: { type: "string", default: "production" },
      account: { type: "string", multiple: true, default: [] },
      "external-user-id": { type: "string", default: "" },
      source: { type: "string", default: "" },
      field: { type: "string", multiple: true, default: [] },
      "deadline-ms": { type: "string", default: "5000" },
      "wait-for-ready": { type: "boolean", default: false },
      "page-size": { type: "string", default: "0" },
      "duration-s": { type: "string", default: "20" },
      "interval-ms": { type: "string", default: "20" },
      "source-api": { type: "string" },
      "reject-timeout-ms": { type: "string", default: "10000" },
      reads: { type: "string", default: "1000000" },
    },
  });
  if (positionals.length !== 1) throw new TypeError("one scenario expected");
  if (!values.target) throw new TypeError("--target is required");
  return { scenario: positionals[0], ...values, target: values.target };
}

function ref(a: Args, account = a.account[0] ?? ""): AccountRef {
  return {
    projectId: a.project,
    accountId: account,
    source: a.source,
    environment: a.environment as "production" | "development",
    externalUserId: a["external-user-id"],
    requiredFields: a.field,
  };
}

function errorOf(e: CredentialsError, started: number): Result {
  return {
    code: e.codeName,
    reason: e.reason ?? null,
    retry_after_ms: e.retryAfterMs ?? null,
    violations: e.violations.map((v) => ({ field: v.field, description: v.description })),
    hint: e.hint ?? null,
    elapsed_ms: Math.round(performance.now() - started),
  };
}

async function get(client: CredentialsClient, a: Args): Promise<Result> {
  const creds = await client.getCredentials(ref(a));
  return { fields: Object.keys(creds.fields).sort(), token_fp: fp(creds.accessToken) };
}

async function list(client: CredentialsClient, a: Args): Promise<Result> {
  const ids: string[] = [];
  let pages = 0;
  const query = {
    projectId: a.project,
    environment: a.environment as "production" | "development",
    source: a.source,
    externalUserId: a["external-user-id"],
    pageSize: Number(a["page-size"]),
  };
  for await (const page of client.accountPages(query)) {
    pages++;
    ids.push(...page.map((account) => account.accountId));
  }
  return { count: ids.length, pages, ids_fp: fp(ids.sort().join(",")) };
}

async function sourceStatus(url: string, token: string): Promise<number> {
  try {
    const resp = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
    await resp.arrayBuffer();
    return resp.status;
  } catch (err) {
    console.error(`source API: ${(err as Error).message}`);
    return 0;
  }
}

async function hold(client: CredentialsClient, a: Args): Promise<Result> {
  const creds = await client.refreshableCredentials(ref(a));
  emit({ event: "ready" });
  const counts = { reads: 0, read_errors: 0, source_ok: 0, source_401: 0, rejects: 0 };
  const tokens = new Set<string>();
  const interval = Number(a["interval-ms"]);
  const end = performance.now() + Number(a["duration-s"]) * 1000;
  let next = performance.now();
  try {
    while (performance.now() < end) {
      counts.reads++;
      let token: string | undefined;
      try {
        token = creds.accessToken;
      } catch (err) {
        counts.read_errors++;
        console.error(`read error: ${(err as Error).message}`);
      }
      if (token !== undefined) {
        tokens.add(token);
        if (a["source-api"]) {
          if ((await sourceStatus(a["source-api"], token)) === 200) {
            counts.source_ok++;
          } else {
            counts.source_401++;
            counts.rejects++;
            await creds
              .reject(token, { timeoutMs: Number(a["reject-timeout-ms"]) })
              .catch((err: Error) => console.error(`reject failed: ${err.message}`));
          }
        }
      }
      next += interval;
      await sleep(Math.max(0, next - performance.now()));
    }
  } finally {
    creds.close();
  }
  return { ...counts, distinct_tokens: tokens.size };
}

async function reject(client: CredentialsClient, a: Args): Promise<Result> {
  const creds = await client.refreshableCredentials(ref(a));
  try {
    const before = creds.accessToken;
    emit({ event: "ready", token_fp: fp(before) });
    const lines = createInterface({ input: process.stdin });
    await new Promise<void>((resolve) => lines.once("line", () => resolve()).once("close", () => resolve()));
    lines.close();
    const started = performance.now();
    const after = (await creds.reject(before, { timeoutMs: Number(a["reject-timeout-ms"]) })).accessToken;
    return {
      before_fp: fp(before),
      after_fp: fp(after),
      changed: after !== before,
      elapsed_ms: Math.round(performance.now() - started),
    };
  } finally {
    creds.close();
  }
}

// A full collection before each heap reading; the harness starts node without
// --expose-gc, so the flag is set here (only the bench scenario asks).
function collector(): () => void {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

function heapUsed(gc: () => void): number {
  gc();
  return process.memoryUsage().heapUsed;
}

// bench: one object per --account; the cost of a read, the heap per object, and
// when each rotated token was first readable.
async function bench(client: CredentialsClient, a: Args): Promise<Result> {
  // One object first, held through the measurement: the connection and the code paths
  // it warms are the client's, not each object's.
  const warm = await client.refreshableCredentials(ref(a));
  const gc = collector();
  const before = heapUsed(gc);
  const held = new Map<string, RefreshableCredentials>();
  for (const account of a.account) held.set(account, await client.refreshableCredentials(ref(a, account)));
  const perObject = Math.round((heapUsed(gc) - before) / held.size);
  const first = held.values().next().value as RefreshableCredentials;
  const reads = Number(a.reads);
  let sink = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < reads; i++) sink += first.accessToken.length;
  const readNs = Number(process.hrtime.bigint() - started) / reads;
  if (sink < 0) console.error(sink); // keeps the loop from being optimised away
  const old = new Map([...held].map(([account, creds]) => [account, creds.accessToken]));
  emit({ event: "ready", read_ns: readNs, bytes_per_object: perObject });
  const changed: Record<string, number> = {};
  const end = performance.now() + Number(a["duration-s"]) * 1000;
  while (Object.keys(changed).length < held.size && performance.now() < end) {
    for (const [account, creds] of held) {
      if (!(account in changed) && creds.accessToken !== old.get(account)) changed[account] = Date.now();
    }
    await sleep(1);
  }
  for (const creds of held.values()) creds.close();
  warm.close();
  return { read_ns: readNs, bytes_per_object: perObject, changed_at_ms: changed };
}

const SCENARIOS: Record<string, (client: CredentialsClient, a: Args) => Promise<Result>> = {
  get,
  list,
  error: get,
  hold,
  reject,
  bench,
};

async function main(): Promise<number> {
  let a: Args;
  let client: CredentialsClient;
  try {
    a = parse(process.argv.slice(2));
    if (!(a.scenario in SCENARIOS)) throw new TypeError(`unknown scenario "${a.scenario}"`);
    client = new CredentialsClient(a.target, {
      apiToken: a.token,
      tlsCa: a.ca,
      tlsCert: a.cert,
      tlsKey: a.key,
      tlsServerName: a["server-name"],
      timeoutMs: Number(a["deadline-ms"]),
      waitForReady: a["wait-for-ready"],
    });
  } catch (err) {
    console.error(`driver: ${(err as Error).message}`);
    return 2;
  }
  const result: Result = { lang: "ts", scenario: a.scenario, ok: true, error: null };
  const started = performance.now();
  try {
    Object.assign(result, await SCENARIOS[a.scenario](client, a));
  } catch (err) {
    if (!(err instanceof CredentialsError)) throw err;
    Object.assign(result, { ok: false, error: errorOf(err, started) });
  } finally {
    client.close();
  }
  emit(result);
  return 0;
}

// Exit explicitly: an idle HTTP/2 session would otherwise keep Node alive.
main().then((code) => process.exit(code));
