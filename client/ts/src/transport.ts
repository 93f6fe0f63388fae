// The gRPC channel of a CredentialsClient: Connect's gRPC transport for Node
// over one HTTP/2 session (TCP or a Unix socket, plaintext or TLS), and the
// API token as a header on every call.
import { readFileSync } from "node:fs";
import { connect as netConnect, isIPv6 } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type { SecureClientSessionOptions } from "node:http2";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

/** A PEM value: a path to a PEM file, or the PEM text or bytes themselves. */
export type Pem = string | Uint8Array;

export interface TlsOptions {
  /** The CA that signed the sidecar's certificate; giving it turns TLS on. */
  tlsCa?: Pem;
  /** A client certificate and its key, for a listener started with --tls-client-ca. */
  tlsCert?: Pem;
  tlsKey?: Pem;
  /** The name to expect in the server certificate when the target does not name it. */
  tlsServerName?: string;
}

function pem(value: Pem | undefined, name: string): Buffer | string | undefined {
  if (value === undefined || (typeof value === "string" && value.includes("-----BEGIN "))) {
    return value;
  }
  if (typeof value !== "string") return Buffer.from(value);
  try {
    return readFileSync(value);
  } catch (err) {
    throw new TypeError(`${name}=${JSON.stringify(value)}: ${(err as Error).message}`);
  }
}

/** The Unix socket path of a "unix:/path" (or "unix:///path") target, else undefined. */
export function unixPath(target: string): string | undefined {
  return target.startsWith("unix:") ? target.slice("unix:".length).replace(/^\/\/(?=\/)/, "") : undefined;
}

/** Whether a target stays on this machine (a Unix socket or a loopback address). */
export function isLocal(target: string): boolean {
  if (unixPath(target) !== undefined) return true;
  const host = target.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
  return host === "localhost" || /^127\./.test(host) || (isIPv6(host) && host === "::1");
}

export interface Channel {
  transport: Transport;
  session: Http2SessionManager;
  tls: boolean;
}

export function openChannel(target: string, tls: TlsOptions, apiToken?: string): Channel {
  const ca = pem(tls.tlsCa, "tlsCa");
  const cert = pem(tls.tlsCert, "tlsCert");
  const key = pem(tls.tlsKey, "tlsKey");
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError("tlsCert and tlsKey go together (a client certificate and its key)");
  }
  const secure = ca !== undefined || cert !== undefined;
  if (apiToken && !secure && !isLocal(target)) {
    throw new TypeError(
      `refusing to send the API token in plaintext to ${target}: use TLS (tlsCa), a loopback ` +
        "address or a Unix socket",
    );
  }
  const path = unixPath(target);
  const scheme = secure ? "https" : "http";
  const baseUrl = path !== undefined ? `${scheme}://${tls.tlsServerName ?? "localhost"}` : `${scheme}://${target}`;
  const options: SecureClientSessionOptions = {};
  if (secure) {
    Object.assign(options, { ca, cert, key });
    if (tls.tlsServerName) options.servername = tls.tlsServerName;
  }
  if (path !== undefined) {
    options.createConnection = () =>
      secure
        ? tlsConnect({ socket: netConnect(path), ca, cert, key, servername: tls.tlsServerName ?? "localhost", ALPNProtocols: ["h2"] })
        : netConnect(path);
  }
  const session = new Http2SessionManager(baseUrl, { idleConnectionTimeoutMs: 60_000 }, options);
  const interceptors: Interceptor[] = [];
  if (apiToken) {
    const bearer = `Bearer ${apiToken}`;
    interceptors.push((next) => (req) => {
      req.header.set("authorization", bearer);
      return next(req);
    });
  }
  return { transport: createGrpcTransport({ baseUrl, sessionManager: session, interceptors }), session, tls: secure };
}
