import { strict as assert } from "node:assert";
import { createServer } from "node:net";
import { after, before, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { CredentialsClient, CredentialsError } from "../src/index.js";
import { FakeSidecar, richError } from "./fake.js";

const ref = { projectId: "proj_x", accountId: "apn_x", source: "notion" };
let fake: FakeSidecar;
let target: string;

before(async () => {
  fake = new FakeSidecar();
  target = await fake.listen();
});
after(() => fake.close());

async function rejection(p: Promise<unknown>): Promise<CredentialsError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof CredentialsError, `not a CredentialsError: ${String(err)}`);
    return err;
  }
  assert.fail("no error");
}

test("an error carries its reason, retry delay and violations, and no hint", async () => {
  fake.get = () => {
    throw richError(Code.ResourceExhausted, "RATE_LIMITED", 1500, "account.project_id");
  };
  const client = new CredentialsClient(target);
  try {
    const e = await rejection(client.getCredentials(ref));
    assert.equal(e.codeName, "RESOURCE_EXHAUSTED");
    assert.equal(e.reason, "RATE_LIMITED");
    assert.equal(e.retryAfterMs, 1500);
    assert.deepEqual(e.violations, [{ field: "account.project_id", description: "bad account.project_id" }]);
    assert.equal(e.metadata["account"], "apn_x");
    assert.equal(e.hint, undefined);
  } finally {
    fake.get = undefined;
    client.close();
  }
});

test("an unreachable target fails fast without wait-for-ready, naming it", async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve())); // nothing listens now
  const down = `127.0.0.1:${port}`;
  const client = new CredentialsClient(down, { waitForReady: false });
  const started = Date.now();
  const e = await rejection(client.getCredentials(ref));
  client.close();
  assert.equal(e.code, Code.Unavailable);
  assert.match(e.hint ?? "", new RegExp(`${down}.*nothing listens there`));
  assert.ok(Date.now() - started < 5000);
});

test("with wait-for-ready the deadline passes and the hint says it waited", async () => {
  const client = new CredentialsClient("unix:/nonexistent/pdsidecar.sock", { timeoutMs: 300 });
  const e = await rejection(client.refreshToken());
  client.close();
  assert.equal(e.code, Code.DeadlineExceeded);
  assert.match(e.hint ?? "", /waited .*unix:\/nonexistent\/pdsidecar.sock.*no Unix socket/);
});

test("the API token is sent as a bearer header, never in plaintext off the machine", async () => {
  const client = new CredentialsClient(target, { apiToken: "sekret-for-test" });
  await client.getCredentials(ref);
  client.close();
  assert.equal(fake.lastAuth, "Bearer sekret-for-test");
  assert.throws(
    () => new CredentialsClient("10.1.2.3:50051", { apiToken: "sekret-for-test" }),
    (err: Error) => /plaintext/.test(err.message) && !err.message.includes("sekret"),
  );
  for (const local of ["unix:/run/pdsidecar.sock", "localhost:1", "[::1]:1"]) {
    new CredentialsClient(local, { apiToken: "sekret-for-test" }).close();
  }
});

test("accountPages fetches page after page, lazily", async () => {
  fake.accounts = 5;
  const client = new CredentialsClient(target);
  try {
    const pages: string[][] = [];
    for await (const page of client.accountPages({ projectId: "proj_x", pageSize: 2 })) {
      pages.push(page.map((a) => a.accountId));
    }
    assert.deepEqual(pages, [["a", "b"], ["c", "d"], ["e"]]);
    const rest: string[] = [];
    for await (const page of client.accountPages({ projectId: "proj_x", pageSize: 2, pageToken: "2" })) {
      rest.push(...page.map((a) => a.accountId));
    }
    assert.deepEqual(rest, ["c", "d", "e"]);
  } finally {
    client.close();
  }
});
