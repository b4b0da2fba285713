/**
 * The API's listeners: the Unix socket (default /run/aegisbpf/api.sock, mode 0600) serving everything to
 * allowed peers, and optional loopback TCP listeners serving the read-only endpoints.
 *
 * No listener is Deno's own: `Deno.serve` holds every connection it accepts, with no cap and no deadline
 * for a request head, and ends the process when accept fails (out of descriptors). Each public listener is
 * ours, with its own accept loop (a failed accept waits and goes on) and the limits of relay.ts; an
 * accepted connection is relayed to the app, served by Deno on a private socket in a 0700 directory.
 * Deno's Unix listeners do not tell who is on the other end, so the public socket is ffi/unix_socket.ts:
 * each connection's peer uid (SO_PEERCRED) is checked, a refused peer gets a 403 problem and is closed.
 * A TCP listener serves only requests whose Host names it (host_check.ts).
 */

import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Hono } from "hono";
import { type UnixConnection, UnixListener } from "../../ffi/mod.ts";
import { InputError, messageOf, RefusedError } from "../errors.ts";
import type { ApiAddress } from "./address.ts";
import { guardHost } from "./host_check.ts";
import { problemBytes } from "./problem.ts";
import {
  type ClientStream,
  CONNECTION_LIMITS,
  ConnectionGate,
  type ConnectionLimits,
  readRequestHead,
  relayToApp,
} from "./relay.ts";

export { type ApiAddress, DEFAULT_API_SOCKET, parseApiAddress } from "./address.ts";

/** How long a refused peer may take to send its request before it is closed without the answer. */
const REFUSAL_HEAD_MS = 1000;
/** Refused peers answered at once; more are closed unanswered. */
const REFUSALS_AT_ONCE = 8;
/** A failed accept (out of descriptors) waits this long, doubling up to a second, before the next. */
const ACCEPT_BACKOFF_MS = 50;

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
  /** Connection cap and timeouts of each listener (default CONNECTION_LIMITS). */
  limits?: ConnectionLimits;
  onError?: (error: unknown) => void;
};

type Listener = { close(): Promise<void> };

export async function serveApi(options: ServeOptions): Promise<ApiServer> {
  const listeners: Listener[] = [];
  let refused = 0;
  const close = async () => {
    for (const listener of listeners.splice(0).reverse()) await listener.close();
  };
  try {
    for (const address of options.addresses) {
      listeners.push(
        address.transport === "tcp"
          ? await serveTcp(address, options)
          : await serveUnix(address.path, options, () => refused++),
      );
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

/** Prefix of the private sockets' directories; the owner's pid follows it. */
const PRIVATE_PREFIX = "aegisbpf-api-";
const PRIVATE_NAME = /^aegisbpf-api-(\d+)-/;

/**
 * The app served by Deno on a Unix socket in a new 0700 directory, reachable only by this process (root).
 * The directory's name carries the pid, so that the directories of agents killed before they could remove
 * theirs are removed by the next one.
 */
async function privateApp(app: Hono): Promise<{ path: string; close(): Promise<void> }> {
  await removeDeadPrivateDirs(tmpdir());
  const dir = await Deno.makeTempDir({ prefix: `${PRIVATE_PREFIX}${Deno.pid}-` });
  await Deno.chmod(dir, 0o700);
  const path = join(dir, "app.sock");
  const server = Deno.serve({ transport: "unix", path, onListen: () => {} }, app.fetch);
  return {
    path,
    close: async () => {
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * Removes the private socket directories under `parent` that `uid` (this process's) owns and whose process is
 * gone (`alive`: /proc/PID exists). A directory whose pid is alive, or that another user owns, is left
 * alone, as is every other name.
 */
export async function removeDeadPrivateDirs(
  parent: string,
  uid = Deno.uid(),
  alive = pidAlive,
): Promise<number> {
  let removed = 0;
  for await (const entry of Deno.readDir(parent)) {
    const pid = PRIVATE_NAME.exec(entry.name)?.[1];
    if (!entry.isDirectory || pid === undefined || alive(Number(pid))) continue;
    const path = join(parent, entry.name);
    try {
      if ((await Deno.lstat(path)).uid !== uid) continue;
      await Deno.remove(path, { recursive: true });
      removed++;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return removed;
}

function pidAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Accepts while `gate` has room, until `accept` says the listener is closed (undefined). A failed accept (EMFILE, ENFILE: the
 * process or the system is out of descriptors) is reported once, then waited out with a growing pause: the
 * pending connection stays queued in the kernel and is taken when descriptors are free again.
 */
async function acceptLoop<T>(
  gate: ConnectionGate,
  accept: () => Promise<T | undefined>,
  onConnection: (connection: T) => void,
  onError: (error: unknown) => void,
): Promise<void> {
  let backoffMs = 0;
  for (;;) {
    await gate.room();
    let connection: T | undefined;
    try {
      connection = await accept();
    } catch (error) {
      if (backoffMs === 0) onError(error);
      backoffMs = Math.min(backoffMs === 0 ? ACCEPT_BACKOFF_MS : backoffMs * 2, 1000);
      await new Promise((resolve) => setTimeout(resolve, backoffMs));
      continue;
    }
    if (connection === undefined) return;
    backoffMs = 0;
    onConnection(connection);
  }
}

async function serveTcp(
  address: Extract<ApiAddress, { transport: "tcp" }>,
  options: ServeOptions,
): Promise<Listener> {
  const limits = options.limits ?? CONNECTION_LIMITS;
  const onError = options.onError ?? (() => {});
  const app = await privateApp(guardHost(options.readOnlyApp, address));
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: address.hostname, port: address.port });
  } catch (error) {
    await app.close();
    throw error;
  }
  const gate = new ConnectionGate(limits, onError);
  let closed = false;
  const accepting = acceptLoop(
    gate,
    async () => {
      try {
        return await listener.accept();
      } catch (error) {
        if (closed) return undefined;
        throw error;
      }
    },
    (conn) => gate.admit(tcpClient(conn), (client) => relayToApp(client, app.path, limits)),
    (error) =>
      onError(new Error(`tcp:${address.hostname}:${address.port}: accept failed: ${messageOf(error)}`)),
  );
  return {
    close: async () => {
      closed = true;
      listener.close();
      await accepting;
      await gate.close();
      await app.close();
    },
  };
}

/** A TCP connection as a ClientStream: closing it is what wakes a pending read or write. */
function tcpClient(conn: Deno.TcpConn): ClientStream {
  let open = true;
  const close = () => {
    if (open) conn.close();
    open = false;
  };
  return {
    read: async (buffer) => (await conn.read(buffer).catch(() => null)) ?? 0,
    write: async (data) => {
      try {
        for (let offset = 0; offset < data.byteLength;) offset += await conn.write(data.subarray(offset));
        return true;
      } catch {
        return false;
      }
    },
    shutdown: close,
    close,
  };
}

async function serveUnix(path: string, options: ServeOptions, onRefused: () => void): Promise<Listener> {
  const limits = options.limits ?? CONNECTION_LIMITS;
  const onError = options.onError ?? (() => {});
  await refuseLiveSocket(path);
  prepareSocketPath(path);
  const app = await privateApp(options.app);
  let listener: UnixListener;
  try {
    listener = UnixListener.listen(path, 0o600);
  } catch (error) {
    await app.close();
    throw error;
  }
  const gate = new ConnectionGate(limits, onError);
  // Refused peers have slots of their own: however many, they never hold one an allowed peer needs.
  const refusals = new ConnectionGate({ ...limits, maxConnections: REFUSALS_AT_ONCE }, onError);
  const refuse = async (connection: UnixConnection) => {
    onRefused();
    // The request is read first: a client that sees the socket closed before it sent its request reports a
    // failed connect, not the answer.
    await readRequestHead(connection, { ...limits, headerTimeoutMs: REFUSAL_HEAD_MS });
    await connection.write(problemBytes(403, "Forbidden", `uid ${connection.peer.uid} may not use this API`));
  };
  const accepting = acceptLoop(
    gate,
    () => listener.accept(),
    (connection) => {
      if (options.allowUids.includes(connection.peer.uid)) {
        gate.admit(connection, () => relayToApp(connection, app.path, limits));
      } else refusals.admit(connection, () => refuse(connection)); // closed at once when full
    },
    (error) => onError(new Error(`unix:${path}: accept failed: ${messageOf(error)}`)),
  );
  return {
    close: async () => {
      listener.close();
      await accepting;
      await Promise.all([gate.close(), refusals.close()]);
      await app.close();
    },
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
