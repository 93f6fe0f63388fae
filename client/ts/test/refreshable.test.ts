import { strict as assert } from "node:assert";
import { afterEach, beforeEach, test } from "node:test";
import { inspect } from "node:util";
import { Code } from "@connectrpc/connect";
import { CredentialsClient, CredentialsError, type RefreshableCredentials } from "../src/index.js";
import { FakeSidecar, eventually, richError } from "./fake.js";

const ref = { projectId: "proj_x", accountId: "apn_x", source: "notion" };
const fast = { backoffMs: { initial: 1, max: 10 } };
let fake: FakeSidecar;
let client: CredentialsClient;

beforeEach(async () => {
  fake = new FakeSidecar();
  client = new CredentialsClient(await fake.listen());
});
afterEach(async () => {
  client.close();
  await fake.close();
});

function readError(creds: RefreshableCredentials): CredentialsError | undefined {
  try {
    void creds.accessToken;
    return undefined;
  } catch (err) {
    assert.ok(err instanceof CredentialsError);
    return err;
  }
}

test("the first value is there on return, rotations follow and onUpdate fires", async () => {
  let updates = 0;
  const creds = await client.refreshableCredentials(ref, { ...fast, onUpdate: () => updates++ });
  try {
    assert.equal(creds.accessToken, "t1");
    fake.rotate("t2");
    await eventually(() => creds.accessToken === "t2", "the rotated value");
    assert.equal(creds.credentials.fields["workspace"], "w");
    assert.equal(updates, 2);
    assert.ok(!String(creds).includes("t2"));
    for (const shown of [String(creds.credentials), JSON.stringify(creds.credentials), inspect(creds.credentials)]) {
      assert.ok(!shown.includes("t2") && shown.includes("access_token"), shown);
    }
  } finally {
    creds.close();
  }
});

test("the stream is reopened after UNAVAILABLE and RetryInfo, and reads never fail", async () => {
  const creds = await client.refreshableCredentials(ref, fast);
  try {
    fake.end(richError(Code.Unavailable, "SIDECAR_STOPPING"));
    assert.equal(creds.accessToken, "t1");
    await eventually(() => fake.opened === 2, "the reopened stream");
    fake.end(richError(Code.ResourceExhausted, "TOO_MANY_WATCHERS", 5));
    await eventually(() => fake.opened === 3, "the stream reopened after RetryInfo");
    fake.rotate("t2");
    await eventually(() => creds.accessToken === "t2", "the value after reconnecting");
    assert.equal(creds.reconnects, 2);
  } finally {
    creds.close();
  }
});

test("an account problem surfaces on the next read and ends the watch", async () => {
  const creds = await client.refreshableCredentials(ref, fast);
  fake.end(richError(Code.FailedPrecondition, "ACCOUNT_DEAD"));
  await eventually(() => readError(creds) !== undefined, "the read error");
  assert.equal(readError(creds)?.reason, "ACCOUNT_DEAD");
  assert.equal(creds.reconnects, 0);
  creds.close();
});

test("construction fails with the account's error", async () => {
  fake.openError = richError(Code.FailedPrecondition, "ACCOUNT_DEAD");
  await assert.rejects(client.refreshableCredentials(ref), (err: CredentialsError) => err.reason === "ACCOUNT_DEAD");
});

test("reject returns a different value, and a late rejected one does not win back", async () => {
  fake.get = (req) => {
    assert.equal(req.rejectedAccessToken, "t1");
    return "t2";
  };
  const creds = await client.refreshableCredentials(ref, fast);
  try {
    assert.equal((await creds.reject("t1")).accessToken, "t2");
    fake.rotate("t1"); // sent before the refetch
    fake.rotate("t3");
    await eventually(() => creds.accessToken === "t3", "t3");
    fake.get = undefined;
    assert.equal((await creds.reject("t1")).accessToken, "t3"); // already past it: no call
  } finally {
    creds.close();
  }
});

test("reject fails DEADLINE_EXCEEDED when no other value comes", async () => {
  const creds = await client.refreshableCredentials(ref, fast);
  try {
    await assert.rejects(creds.reject("t1", { timeoutMs: 50 }), (err: CredentialsError) => err.code === Code.DeadlineExceeded);
    assert.equal(creds.accessToken, "t1");
  } finally {
    creds.close();
  }
});

test("close and abort end the stream; later reads say CANCELLED", async () => {
  const abort = new AbortController();
  const creds = await client.refreshableCredentials(ref, { ...fast, signal: abort.signal });
  abort.abort();
  await eventually(() => fake.gone === 1, "the server to see the stream end");
  assert.equal(readError(creds)?.code, Code.Canceled);
  creds.close(); // twice is fine
});
