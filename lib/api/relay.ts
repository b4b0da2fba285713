/**
 * How a listener serves one connection, whatever socket it came on: the client's request head is read
 * here, within a deadline and a size, then sent on to the app's private socket with `connection: close`
 * (one request per connection, so the head of every request passes here), and bytes are copied both ways
 * until either side ends. A client that stops sending a request or stops reading its answer is closed after
 * a timeout, and a listener holds at most `maxConnections`: so idle or slow clients, however many, cost a
 * bounded number of descriptors and hold a slot for seconds at most.
 */

import { problemBytes } from "./problem.ts";

/** A client connection as the listeners see it. */
export type ClientStream = {
  /** Reads into `buffer`; 0 at end of stream (or once shut down or failed). */
  read(buffer: Uint8Array<ArrayBuffer>): Promise<number>;
  /** Writes all of `data`; false when the peer is gone. */
  write(data: Uint8Array<ArrayBuffer>): Promise<boolean>;
  /** Ends both directions: a pending read or write returns. */
  shutdown(): void;
  close(): void;
};

export type ConnectionLimits = {
  /** Connections a listener holds at once; beyond, clients wait in the kernel's listen queue. */
  maxConnections: number;
  /** Time from accept to the end of the request head. */
  headerTimeoutMs: number;
  /** Time a request body or the client's reading of an answer may stall. */
  idleTimeoutMs: number;
  /** The largest request head. */
  maxHeadBytes: number;
};

export const CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 32,
  headerTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  maxHeadBytes: 16 * 1024,
};

const RELAY_BUFFER_BYTES = 64 * 1024;
const HEAD_END = [13, 10, 13, 10];

/**
 * The connections of one listener: at most `limits.maxConnections`, each served by `serve`. A full
 * listener accepts no more (`room()` waits): the next clients wait in the kernel's listen queue and cost
 * the agent no descriptor, however many they are.
 */
export class ConnectionGate {
  readonly #open = new Set<ClientStream>();
  readonly #serving = new Set<Promise<void>>();
  readonly #limits: ConnectionLimits;
  readonly #onError: (error: unknown) => void;
  #wakeRoom: (() => void) | undefined;

  constructor(limits: ConnectionLimits, onError: (error: unknown) => void) {
    this.#limits = limits;
    this.#onError = onError;
  }

  get open(): number {
    return this.#open.size;
  }

  /** Resolves once the listener may accept another connection. */
  room(): Promise<void> {
    if (this.#open.size < this.#limits.maxConnections) return Promise.resolve();
    return new Promise((resolve) => (this.#wakeRoom = resolve));
  }

  /** Serves `client`; one accepted while the listener is full (no `room()` awaited) is closed at once. */
  admit(client: ClientStream, serve: (client: ClientStream) => Promise<void>): void {
    if (this.#open.size >= this.#limits.maxConnections) {
      client.close();
      return;
    }
    this.#open.add(client);
    const serving: Promise<void> = serve(client).catch(this.#onError).finally(() => {
      client.close();
      this.#open.delete(client);
      this.#serving.delete(serving);
      const wake = this.#wakeRoom;
      this.#wakeRoom = undefined;
      wake?.();
    });
    this.#serving.add(serving);
  }

  /** Ends every open connection and waits for their handlers. */
  async close(): Promise<void> {
    for (const client of this.#open) client.shutdown();
    await Promise.allSettled([...this.#serving]);
  }
}

/** Calls `expire` once `ms` pass without `arm` being called again or `disarm`. */
class Deadline {
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #ms: number;
  readonly #expire: () => void;

  constructor(ms: number, expire: () => void) {
    this.#ms = ms;
    this.#expire = expire;
  }

  arm(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(this.#expire, this.#ms);
  }

  disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

export type RequestHead = {
  /** The head as sent on to the app: `connection: close` in place of any connection header. */
  head: Uint8Array<ArrayBuffer>;
  /** Bytes read after the head (the start of a body). */
  rest: Uint8Array<ArrayBuffer>;
  /** The body's length when it has a Content-Length; Infinity for a chunked one. */
  bodyBytes: number;
};

/**
 * Reads the client's request head: the head, or the problem answer that closes the connection (408 after
 * the header timeout, 431 when too large, 400 when malformed), or undefined when the client left.
 */
export async function readRequestHead(
  client: ClientStream,
  limits: ConnectionLimits,
): Promise<RequestHead | Uint8Array<ArrayBuffer> | undefined> {
  // The deadline races the reads rather than closing the client, which would leave no way to answer it;
  // the read left pending ends when the client is closed after the answer.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"expired">((resolve) => {
    timer = setTimeout(() => resolve("expired"), limits.headerTimeoutMs);
  });
  try {
    const received = new Uint8Array(limits.maxHeadBytes);
    let length = 0;
    for (;;) {
      const end = indexOfHeadEnd(received, length);
      if (end >= 0) return parseHead(received.slice(0, end), received.slice(end, length));
      if (length === received.byteLength) {
        return problemBytes(
          431,
          "Request head too large",
          `A request head is at most ${received.byteLength} bytes`,
        );
      }
      const n = await Promise.race([client.read(received.subarray(length)), expired]);
      if (n === "expired") {
        return problemBytes(
          408,
          "Request timeout",
          `The request head did not arrive within ${limits.headerTimeoutMs} ms`,
        );
      }
      if (n === 0) return undefined;
      length += n;
    }
  } finally {
    clearTimeout(timer);
  }
}

/** The index just past the blank line ending a head, or -1. */
function indexOfHeadEnd(bytes: Uint8Array, length: number): number {
  for (let i = 0; i + HEAD_END.length <= length; i++) {
    if (HEAD_END.every((byte, k) => bytes[i + k] === byte)) return i + HEAD_END.length;
  }
  return -1;
}

const CONNECTION_HEADERS = new Set(["connection", "keep-alive", "proxy-connection", "upgrade"]);

function parseHead(bytes: Uint8Array, rest: Uint8Array<ArrayBuffer>): RequestHead | Uint8Array<ArrayBuffer> {
  // Header bytes are Latin-1 on the wire: one char per byte keeps them as they came.
  const lines = String.fromCharCode(...bytes).split("\r\n").slice(0, -2);
  const [requestLine, ...fields] = lines;
  if (requestLine === undefined || !/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(requestLine)) {
    return problemBytes(400, "Bad request", "The request line is not HTTP/1.x: METHOD TARGET HTTP/1.1");
  }
  let bodyBytes = 0;
  const kept = [requestLine];
  for (const field of fields) {
    const colon = field.indexOf(":");
    const name = field.slice(0, colon).trim().toLowerCase();
    const value = field.slice(colon + 1).trim().toLowerCase();
    if (colon <= 0) return problemBytes(400, "Bad request", `Not a header field: ${JSON.stringify(field)}`);
    if (CONNECTION_HEADERS.has(name)) continue;
    if (name === "content-length") bodyBytes = Number(value);
    if (name === "transfer-encoding" && value !== "identity") bodyBytes = Infinity;
    kept.push(field);
  }
  if (!Number.isFinite(bodyBytes) && bodyBytes !== Infinity || bodyBytes < 0) {
    return problemBytes(400, "Bad request", "Content-Length is not a number of bytes");
  }
  kept.push("connection: close", "", "");
  const head = Uint8Array.from(kept.join("\r\n"), (char) => char.charCodeAt(0));
  return { head, rest, bodyBytes };
}

/**
 * Serves `client` from the app listening on the Unix socket `appPath`: its request head first (a problem
 * answer when it does not come), then the copy both ways. The body must keep coming and the answer must
 * keep being read, each stall at most `idleTimeoutMs`; the app may take its time.
 */
export async function relayToApp(
  client: ClientStream,
  appPath: string,
  limits: ConnectionLimits,
): Promise<void> {
  const request = await readRequestHead(client, limits);
  if (request === undefined) return;
  if (request instanceof Uint8Array) {
    await client.write(request);
    return;
  }
  const app = await Deno.connect({ transport: "unix", path: appPath });
  let appOpen = true;
  const closeApp = () => {
    if (appOpen) app.close();
    appOpen = false;
  };
  const end = () => {
    client.shutdown();
    closeApp();
  };
  const bodyStall = new Deadline(limits.idleTimeoutMs, end);
  const answerStall = new Deadline(limits.idleTimeoutMs, end);
  try {
    let bodyLeft = request.bodyBytes - request.rest.byteLength;
    const up = (async () => {
      await writeAll(app, request.head);
      await writeAll(app, request.rest);
      const buffer = new Uint8Array(RELAY_BUFFER_BYTES);
      while (bodyLeft > 0) {
        bodyStall.arm();
        const n = await client.read(buffer);
        if (n === 0) break;
        bodyLeft -= n;
        await writeAll(app, buffer.subarray(0, n));
      }
      bodyStall.disarm();
    })();
    const down = (async () => {
      const buffer = new Uint8Array(RELAY_BUFFER_BYTES);
      for (;;) {
        const n = await app.read(buffer).catch(() => null);
        if (n === null) break;
        answerStall.arm();
        const written = await client.write(buffer.slice(0, n));
        answerStall.disarm();
        if (!written) break;
      }
      client.shutdown();
    })();
    await Promise.allSettled([up, down]);
  } finally {
    bodyStall.disarm();
    answerStall.disarm();
    closeApp();
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let offset = 0; offset < data.byteLength;) offset += await conn.write(data.subarray(offset));
}
