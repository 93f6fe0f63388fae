// An in-process CredentialsService over real gRPC (Connect's Node adapter on an
// HTTP/2 server), whose watch streams the tests drive: rotate pushes a value
// to every open stream, end closes them all with an error.
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  BadRequestSchema,
  CredentialsService,
  ErrorInfoSchema,
  RetryInfoSchema,
  type GetCredentialsRequest,
} from "../src/index.js";

type Step = { token: string; error?: undefined } | { token?: undefined; error: ConnectError };

class Steps {
  readonly #items: Step[] = [];
  #wake: (() => void) | undefined;
  push(step: Step): void {
    this.#items.push(step);
    this.#wake?.();
  }
  async next(signal: AbortSignal): Promise<Step | undefined> {
    while (this.#items.length === 0) {
      if (signal.aborted) return undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    }
    return this.#items.shift();
  }
}

export function richError(code: Code, reason: string, retryMs?: number, ...violations: string[]): ConnectError {
  const details: { desc: DescMessage; value: MessageInitShape<DescMessage> }[] = [
    { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { domain: "pdsidecar", reason, metadata: { account: "apn_x" } }) },
  ];
  if (retryMs !== undefined) {
    details.push({ desc: RetryInfoSchema, value: create(RetryInfoSchema, { retryDelay: durationFromMs(retryMs) }) });
  }
  if (violations.length) {
    const fieldViolations = violations.map((field) => ({ field, description: `bad ${field}` }));
    details.push({ desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations }) });
  }
  return new ConnectError(`${reason} happened`, code, undefined, details);
}

export class FakeSidecar {
  token = "t1";
  openError: ConnectError | undefined;
  get: ((req: GetCredentialsRequest) => string) | undefined;
  accounts = 0;
  lastAuth: string | null = null;
  opened = 0;
  gone = 0;
  readonly #streams = new Set<Steps>();
  readonly #server: http2.Http2Server;

  constructor() {
    this.#server = http2.createServer(connectNodeAdapter({ routes: (router) => this.#routes(router), grpc: true, connect: false, grpcWeb: false }));
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return `127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  rotate(token: string): void {
    this.token = token;
    for (const s of this.#streams) s.push({ token });
  }

  end(error: ConnectError): void {
    for (const s of this.#streams) s.push({ error });
    this.#streams.clear();
  }

  #routes(router: ConnectRouter): void {
    const fake = this;
    router.service(CredentialsService, {
      async getCredentials(req, ctx) {
        fake.lastAuth = ctx.requestHeader.get("authorization");
        return { credentials: { access_token: fake.get ? fake.get(req) : fake.token } };
      },
      async listAccounts(req) {
        const start = req.pageToken ? Number(req.pageToken) : 0;
        const end = Math.min(start + req.pageSize, fake.accounts);
        const accounts = Array.from({ length: end - start }, (_, i) => ({ accountId: String.fromCharCode(97 + start + i) }));
        return { accounts, nextPageToken: end < fake.accounts ? String(end) : "" };
      },
      async *watchCredentials(_req, ctx: HandlerContext) {
        fake.opened++;
        if (fake.openError) throw fake.openError;
        const steps = new Steps();
        fake.#streams.add(steps);
        try {
          yield { credentials: { access_token: fake.token, workspace: "w" } };
          for (;;) {
            const step = await steps.next(ctx.signal);
            if (step === undefined) {
              fake.gone++;
              return;
            }
            if (step.error) throw step.error;
            yield { credentials: { access_token: step.token, workspace: "w" } };
          }
        } finally {
          fake.#streams.delete(steps);
        }
      },
    });
  }
}

/** Waits until cond holds, checking every 5 ms; fails after a generous bound (a hang guard). */
export async function eventually(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
