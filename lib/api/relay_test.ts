import assert from "node:assert/strict";
import { type ClientStream, CONNECTION_LIMITS, ConnectionGate, readRequestHead } from "./relay.ts";

/** A client that sends `chunks` then waits (never ends unless shut down, or `ends`). */
class FakeClient implements ClientStream {
  readonly written: string[] = [];
  closed = false;
  #chunks: Uint8Array[];
  #ends: boolean;
  #wake: (() => void) | undefined;

  constructor(chunks: string[], ends = false) {
    this.#chunks = chunks.map((chunk) => new TextEncoder().encode(chunk));
    this.#ends = ends;
  }

  async read(buffer: Uint8Array<ArrayBuffer>): Promise<number> {
    const chunk = this.#chunks.shift();
    if (chunk !== undefined) {
      const n = Math.min(chunk.byteLength, buffer.byteLength);
      buffer.set(chunk.subarray(0, n));
      if (n < chunk.byteLength) this.#chunks.unshift(chunk.subarray(n));
      return n;
    }
    if (this.#ends || this.closed) return 0;
    await new Promise<void>((resolve) => (this.#wake = resolve));
    return 0;
  }

  write(data: Uint8Array<ArrayBuffer>): Promise<boolean> {
    this.written.push(new TextDecoder().decode(data));
    return Promise.resolve(!this.closed);
  }

  shutdown(): void {
    this.closed = true;
    this.#wake?.();
  }

  close(): void {
    this.shutdown();
  }
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

Deno.test("readRequestHead() passes a head on with connection: close in place of keep-alive", async () => {
  const client = new FakeClient([
    "GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1:9180\r\nConnection: keep-alive\r\n",
    "Keep-Alive: timeout=5\r\n\r\nextra",
  ]);
  const request = await readRequestHead(client, CONNECTION_LIMITS);
  assert.ok(request !== undefined && !(request instanceof Uint8Array));
  assert.equal(
    text(request.head),
    "GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1:9180\r\nconnection: close\r\n\r\n",
  );
  assert.equal(text(request.rest), "extra");
  assert.equal(request.bodyBytes, 0);
});

Deno.test("readRequestHead() takes the body's length from Content-Length, Infinity when chunked", async () => {
  const sized = await readRequestHead(
    new FakeClient(["POST /v1/policy HTTP/1.1\r\nContent-Length: 12\r\n\r\n"]),
    CONNECTION_LIMITS,
  );
  assert.ok(sized !== undefined && !(sized instanceof Uint8Array));
  assert.equal(sized.bodyBytes, 12);
  const chunked = await readRequestHead(
    new FakeClient(["POST /v1/policy HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"]),
    CONNECTION_LIMITS,
  );
  assert.ok(chunked !== undefined && !(chunked instanceof Uint8Array));
  assert.equal(chunked.bodyBytes, Infinity);
});

Deno.test("readRequestHead() answers 408 to a client whose head does not arrive in time", async () => {
  const client = new FakeClient(["GET / HTTP/1.1\r\nHost: 127.0.0.1"]);
  const started = performance.now();
  const answer = await readRequestHead(client, { ...CONNECTION_LIMITS, headerTimeoutMs: 100 });
  assert.ok(answer instanceof Uint8Array);
  assert.match(text(answer), /^HTTP\/1\.1 408 Request Timeout\r\n/);
  assert.match(text(answer), /The request head did not arrive within 100 ms/);
  assert.ok(performance.now() - started < 2000);
  assert.ok(!client.closed, "left open for the answer");
});

Deno.test("readRequestHead() answers 431 to an endless head and 400 to a head that is not HTTP", async () => {
  const endless = new FakeClient([
    "GET / HTTP/1.1\r\n",
    ...Array(100).fill("X-Pad: " + "a".repeat(200) + "\r\n"),
  ]);
  const large = await readRequestHead(endless, { ...CONNECTION_LIMITS, maxHeadBytes: 4096 });
  assert.ok(large instanceof Uint8Array);
  assert.match(text(large), /^HTTP\/1\.1 431 /);
  const garbage = await readRequestHead(new FakeClient(["\x16\x03\x01 hello\r\n\r\n"]), CONNECTION_LIMITS);
  assert.ok(garbage instanceof Uint8Array);
  assert.match(text(garbage), /^HTTP\/1\.1 400 /);
  const bad = await readRequestHead(
    new FakeClient(["POST / HTTP/1.1\r\nContent-Length: lots\r\n\r\n"]),
    CONNECTION_LIMITS,
  );
  assert.ok(bad instanceof Uint8Array);
  assert.match(text(bad), /Content-Length is not a number of bytes/);
});

Deno.test("readRequestHead() is undefined when the client leaves before its head ends", async () => {
  assert.equal(await readRequestHead(new FakeClient(["GET / HT"], true), CONNECTION_LIMITS), undefined);
});

Deno.test("ConnectionGate holds at most maxConnections and has room again once one ends", async () => {
  const errors: unknown[] = [];
  const gate = new ConnectionGate({ ...CONNECTION_LIMITS, maxConnections: 2 }, (error) => errors.push(error));
  const idle = (client: ClientStream) => client.read(new Uint8Array(16)).then(() => {});
  const first = new FakeClient([]);
  await gate.room();
  gate.admit(first, idle);
  await gate.room();
  gate.admit(new FakeClient([]), idle);
  let room = false;
  const waiting = gate.room().then(() => (room = true));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(room, false, "a full gate has no room");
  const extra = new FakeClient([]);
  gate.admit(extra, idle);
  assert.ok(extra.closed, "one admitted anyway is closed at once");
  assert.equal(gate.open, 2);

  first.shutdown(); // the idle client ends: its slot is free again
  await waiting;
  assert.equal(gate.open, 1);
  gate.admit(new FakeClient([]), () => Promise.reject(new Error("handler failed")));
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(errors.length, 1);
  await gate.close();
  assert.equal(gate.open, 0);
});
