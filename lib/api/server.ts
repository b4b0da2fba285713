/**
 * The API's listeners: the Unix socket (default /run/aegisbpf/api.sock, mode 0600) serving everything to
 * allowed peers, and optional loopback TCP listeners serving the read-only endpoints.
 *
 * Deno's own listeners do not tell who is on the other end of a Unix socket, so the public socket is ours
 * (ffi/unix_socket.ts): each connection's peer uid (SO_PEERCRED) is checked, a refused peer gets a 403
 * problem and is closed, and an allowed one is relayed to the app, served by Deno on a private socket in a
 * 0700 directory. Relaying copies bytes on worker threads, so a slow client never blocks the agent.
 */

import { dirname, join } from "node:path";
import type { Hono } from "hono";
import { type UnixConnection, UnixListener } from "../../ffi/mod.ts";
import { InputError, RefusedError } from "../errors.ts";
import { jsonText } from "../cli/printable.ts";

export type ApiAddress = { transport: "unix"; path: string } | {
  transport: "tcp";
  hostname: string;
  port: number;
};

export const DEFAULT_API_SOCKET = "/run/aegisbpf/api.sock";

/** Concurrent connections on the Unix socket; beyond, a client gets 503 at once. */
const MAX_CONNECTIONS = 64;
const RELAY_BUFFER_BYTES = 64 * 1024;

/** `unix:PATH` or `tcp:HOST:PORT` (HOST a loopback address), as `run --api` takes it. */
export function parseApiAddress(text: string): ApiAddress {
  if (text.startsWith("unix:")) {
    const path = text.slice(5);
    if (!path.startsWith("/")) {
      throw new InputError(`--api ${text}: give an absolute socket path, unix:/run/aegisbpf/api.sock`);
    }
    return { transport: "unix", path };
  }
  const tcp = /^tcp:(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(text);
  if (tcp) {
    const hostname = tcp[1]!.replace(/^\[|\]$/g, "");
    const port = Number(tcp[2]);
    if (port < 1 || port > 65535) throw new InputError(`--api ${text}: port ${port} is not 1 to 65535`);
    if (!isLoopback(hostname)) {
      throw new InputError(
        `--api ${text}: the TCP listener serves only loopback (127.0.0.0/8, ::1, localhost); ` +
          "put a proxy in front for anything else",
      );
    }
    return { transport: "tcp", hostname, port };
  }
  throw new InputError(`--api ${text}: give unix:PATH or tcp:HOST:PORT`);
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

export type ApiServer = AsyncDisposable & {
  /** Connections refused for their peer uid, so far. */
  readonly refused: number;
  close(): Promise<void>;
};

export type ServeOptions = {
  /** The full app (Unix socket). */
  app: Hono;
  /** The read-only app (TCP). */
  readOnlyApp: Hono;
  addresses: readonly ApiAddress[];
  /** Peer uids allowed on the Unix socket. */
  allowUids: readonly number[];
  onError?: (error: unknown) => void;
};

export async function serveApi(options: ServeOptions): Promise<ApiServer> {
  const closers: (() => Promise<void>)[] = [];
  let refused = 0;
  const close = async () => {
    for (const closer of closers.splice(0).reverse()) await closer();
  };
  try {
    for (const address of options.addresses) {
      if (address.transport === "tcp") {
        const server = Deno.serve(
          { hostname: address.hostname, port: address.port, onListen: () => {} },
          options.readOnlyApp.fetch,
        );
        closers.push(() => server.shutdown());
        continue;
      }
      const unix = await serveUnix(address.path, options, () => refused++);
      closers.push(unix);
    }
  } catch (error) {
    await close();
    throw error;
  }
  return {
    get refused() {
      return refused;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function serveUnix(
  path: string,
  options: ServeOptions,
  onRefused: () => void,
): Promise<() => Promise<void>> {
  await refuseLiveSocket(path);
  prepareSocketPath(path);
  const privateDir = await Deno.makeTempDir({ prefix: "aegisbpf-api-" });
  await Deno.chmod(privateDir, 0o700);
  const innerPath = join(privateDir, "app.sock");
  const inner = Deno.serve({ transport: "unix", path: innerPath, onListen: () => {} }, options.app.fetch);
  let listener: UnixListener;
  try {
    listener = UnixListener.listen(path, 0o600);
  } catch (error) {
    await inner.shutdown();
    await Deno.remove(privateDir, { recursive: true });
    throw error;
  }
  const open = new Set<UnixConnection>();
  const relays = new Set<Promise<void>>();
  const accepting = (async () => {
    for (;;) {
      const connection = await listener.accept();
      if (!connection) return;
      const relay = handle(connection).catch((error) => options.onError?.(error)).finally(() => {
        open.delete(connection);
        relays.delete(relay);
      });
      relays.add(relay);
    }
  })();

  async function handle(connection: UnixConnection): Promise<void> {
    open.add(connection);
    try {
      if (!options.allowUids.includes(connection.peer.uid)) {
        onRefused();
        await answerAndClose(connection, 403, "Forbidden", `uid ${connection.peer.uid} may not use this API`);
        return;
      }
      if (open.size > MAX_CONNECTIONS) {
        await answerAndClose(connection, 503, "Too many connections", `At most ${MAX_CONNECTIONS} at once`);
        return;
      }
      await relay(connection, innerPath);
    } finally {
      connection.close();
    }
  }

  return async () => {
    listener.close();
    await accepting;
    for (const connection of open) connection.shutdown();
    await Promise.allSettled([...relays]);
    await inner.shutdown();
    await Deno.remove(privateDir, { recursive: true });
  };
}

/** Refuses a socket path another process (another agent) is serving: its socket would be taken over. */
async function refuseLiveSocket(path: string): Promise<void> {
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch {
    return; // nothing there, or a socket nobody listens on (left by an agent that died)
  }
  conn.close();
  throw new RefusedError(
    `--api unix:${path}: another process serves it already (another agent?); stop it, or pass --api with ` +
      "another path, or --api none",
  );
}

/** Makes the socket's directory (0700 when made here) and removes a stale socket; refuses anything else. */
function prepareSocketPath(path: string): void {
  Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (!info.isSocket) {
    throw new InputError(`--api unix:${path}: exists and is not a socket; remove it or pick another path`);
  }
  Deno.removeSync(path); // left by an agent that did not exit cleanly; the state lock keeps agents single
}

/** Copies bytes both ways between the client and the app's private socket until either side ends. */
async function relay(client: UnixConnection, innerPath: string): Promise<void> {
  const app = await Deno.connect({ transport: "unix", path: innerPath });
  try {
    const up = (async () => {
      const buffer = new Uint8Array(RELAY_BUFFER_BYTES);
      for (;;) {
        const n = await client.read(buffer);
        if (n === 0) break;
        await writeAll(app, buffer.subarray(0, n));
      }
      await app.closeWrite().catch(() => {});
    })();
    const down = (async () => {
      const buffer = new Uint8Array(RELAY_BUFFER_BYTES);
      for (;;) {
        const n = await app.read(buffer).catch(() => null);
        if (n === null) break;
        if (!(await client.write(buffer.subarray(0, n)))) break;
      }
      client.shutdown();
    })();
    await Promise.allSettled([up, down]);
  } finally {
    app.close();
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let offset = 0; offset < data.byteLength;) offset += await conn.write(data.subarray(offset));
}

/**
 * Answers a connection that is not relayed: reads its request head first (a client that sees the socket
 * closed before it has sent its request reports a failed connect, not the answer), for at most a second.
 */
async function answerAndClose(
  connection: UnixConnection,
  status: number,
  title: string,
  detail: string,
): Promise<void> {
  const timer = setTimeout(() => connection.shutdown(), 1000);
  try {
    const buffer = new Uint8Array(16 * 1024);
    let head = "";
    while (!head.includes("\r\n\r\n") && head.length < buffer.byteLength) {
      const n = await connection.read(buffer);
      if (n === 0) break;
      head += new TextDecoder().decode(buffer.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
  await connection.write(problemResponse(status, title, detail));
}

function problemResponse(status: number, title: string, detail: string): Uint8Array {
  const body = jsonText({ type: "about:blank", title, status, detail });
  const reason = { 403: "Forbidden", 503: "Service Unavailable" }[status] ?? "Error";
  return new TextEncoder().encode(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/problem+json\r\n` +
      `content-length: ${new TextEncoder().encode(body).byteLength}\r\nconnection: close\r\n\r\n${body}`,
  );
}
