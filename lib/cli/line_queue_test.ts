import assert from "node:assert/strict";
import { LineQueue } from "./line_queue.ts";

/** A sink that holds every write until released, recording what it was given. */
function stalledSink() {
  const written: string[] = [];
  let release!: () => void;
  let gate = new Promise<void>((resolve) => (release = resolve));
  const decoder = new TextDecoder();
  return {
    written,
    release: () => release(),
    stall: () => (gate = new Promise<void>((resolve) => (release = resolve))),
    async write(data: Uint8Array): Promise<number> {
      await gate;
      written.push(decoder.decode(data));
      return data.length;
    },
  };
}

Deno.test("LineQueue.line() returns at once while the reader stalls, and drops beyond its bound", async () => {
  const sink = stalledSink();
  const dropped: number[] = [];
  const queue = new LineQueue(sink, {
    maxChars: 40,
    onDropped: (count) => dropped.push(count),
    onClosed: (error) => assert.fail(`closed: ${error}`),
  });
  const accepted = Array.from({ length: 10 }, (_, i) => queue.line(`line ${i}`));
  // "line N\n" is 7 characters: the first is in flight (taken off the queue), then 5 more fit in 40.
  assert.deepEqual(accepted, [true, true, true, true, true, true, false, false, false, false]);
  assert.equal(queue.dropped, 4);
  assert.equal(sink.written.length, 0, "nothing written while the reader stalls");
  sink.release();
  assert.equal(await queue.flush(1000), true);
  assert.deepEqual(
    sink.written.join("").split("\n").slice(0, -1),
    accepted.flatMap((ok, i) => ok ? [`line ${i}`] : []),
  );
  assert.deepEqual(dropped, [4], "the loss is reported once, when caught up");
});

Deno.test("LineQueue.flush() gives up after its timeout when the reader never reads", async () => {
  const sink = stalledSink();
  const queue = new LineQueue(sink, { onDropped: () => {}, onClosed: () => {} });
  queue.line("stuck");
  const started = performance.now();
  assert.equal(await queue.flush(50), false);
  assert.ok(performance.now() - started < 1000);
  sink.release();
  assert.equal(await queue.flush(1000), true);
  assert.deepEqual(sink.written, ["stuck\n"]);
});

Deno.test("LineQueue ends when the reader leaves: one onClosed, later lines discarded", async () => {
  const closed: unknown[] = [];
  const queue = new LineQueue({
    write: () => Promise.reject(new Deno.errors.BrokenPipe("Broken pipe (os error 32)")),
  }, {
    onDropped: () => assert.fail("nothing was dropped for lack of room"),
    onClosed: (e) => closed.push(e),
  });
  assert.equal(queue.line("first"), true);
  assert.equal(await queue.flush(1000), true);
  assert.equal(queue.closed, true);
  assert.equal(queue.line("second"), false);
  assert.equal(closed.length, 1);
  assert.ok(closed[0] instanceof Deno.errors.BrokenPipe);
});

Deno.test("LineQueue writes a partial write's rest before the next lines", async () => {
  const written: number[] = [];
  const bytes: number[] = [];
  const queue = new LineQueue({
    write: (data) => {
      const n = Math.min(3, data.length);
      written.push(n);
      bytes.push(...data.subarray(0, n));
      return Promise.resolve(n);
    },
  }, { onDropped: () => {}, onClosed: () => {} });
  queue.line("abcdefg");
  queue.line("hi");
  assert.equal(await queue.flush(1000), true);
  assert.equal(new TextDecoder().decode(new Uint8Array(bytes)), "abcdefg\nhi\n");
  assert.ok(written.every((n) => n <= 3));
});

Deno.test("LineQueue writes a line queued just as a drain ends (from a promise's continuation)", async () => {
  // The line comes 0 to 9 microtask steps after the write resolves: one of them is the drain's last step.
  for (let steps = 0; steps < 10; steps++) {
    const written: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const queue = new LineQueue({
      write: (data) => {
        written.push(new TextDecoder().decode(data));
        return written.length === 1 ? gate.then(() => data.length) : Promise.resolve(data.length);
      },
    }, { onDropped: () => {}, onClosed: () => {} });
    queue.line("a");
    let late: Promise<unknown> = gate;
    for (let i = 0; i < steps; i++) late = late.then(() => {});
    const queued = late.then(() => queue.line("b"));
    release();
    await queued;
    assert.equal(await queue.flush(1000), true);
    assert.deepEqual(written, ["a\n", "b\n"], `b queued ${steps} steps after the write`);
  }
});

Deno.test("LineQueue.line(text, true) keeps a line a full queue would drop, in its place", async () => {
  const sink = stalledSink();
  const queue = new LineQueue(sink, { maxChars: 20, onDropped: () => {}, onClosed: () => {} });
  const accepted = ["a 1", "a 2", "a 3", "a 4", "a 5", "a 6"].map((line) => queue.line(line));
  assert.equal(queue.line("report", true), true, "kept although the queue is full");
  assert.equal(queue.line("a 7"), false);
  sink.release();
  assert.equal(await queue.flush(1000), true);
  const written = sink.written.join("").split("\n").slice(0, -1);
  assert.deepEqual(written, [...accepted.flatMap((ok, i) => ok ? [`a ${i + 1}`] : []), "report"]);
});

Deno.test("LineQueue writes every line queued meanwhile in one write, UTF-8 and escapes as given", async () => {
  const sink = stalledSink();
  const queue = new LineQueue(sink, { onDropped: () => assert.fail("nothing dropped"), onClosed: () => {} });
  const lines = ["first", '{"comm":"é\\u009b日本","path":"/a\\nb"}', "😀 astral", "last"];
  for (const line of lines) assert.equal(queue.line(line), true);
  sink.release();
  assert.equal(await queue.flush(1000), true);
  assert.deepEqual(
    sink.written,
    ["first\n", `${lines.slice(1).join("\n")}\n`],
    "one write for all that waited",
  );
});

Deno.test("LineQueue.bytes() keeps its order among lines, is copied at once, and drops beyond the bound", async () => {
  const sink = stalledSink();
  const dropped: number[] = [];
  const queue = new LineQueue(sink, {
    maxChars: 40,
    onDropped: (count) => dropped.push(count),
    onClosed: (error) => assert.fail(`closed: ${error}`),
  });
  const encoder = new TextEncoder();
  // One buffer reused for every line, as the event writer reuses its own.
  const reused = new Uint8Array(16);
  const bytes = (text: string) => {
    const { written } = encoder.encodeInto(`${text}\n`, reused);
    return queue.bytes(reused.subarray(0, written));
  };
  const accepted = [
    queue.line("é first"),
    bytes("bytes 1"),
    queue.line("line 2"),
    bytes("bytes 3"),
    bytes("bytes 4"),
    bytes("bytes 5"),
    bytes("bytes 6"),
    bytes("bytes 7"),
  ];
  // The first (in flight) is off the queue; then 8 + 7 + 8 + 8 + 8 characters fit in 40, no more.
  assert.deepEqual(accepted, [true, true, true, true, true, true, false, false]);
  sink.release();
  assert.equal(await queue.flush(1000), true);
  assert.deepEqual(sink.written.join(""), "é first\nbytes 1\nline 2\nbytes 3\nbytes 4\nbytes 5\n");
  assert.deepEqual(dropped, [2]);
});

Deno.test("LineQueue writes a chunk of lines given only as bytes with writePrintable, any other with write", async () => {
  const calls: string[] = [];
  const decoder = new TextDecoder();
  const sink = {
    write: (data: Uint8Array) => (calls.push(`write ${decoder.decode(data)}`), Promise.resolve(data.length)),
    writePrintable: (
      data: Uint8Array,
    ) => (calls.push(`printable ${decoder.decode(data)}`), Promise.resolve(data.length)),
  };
  const queue = new LineQueue(sink, {
    onDropped: () => {},
    onClosed: (error) => assert.fail(`closed: ${error}`),
  });
  const encoder = new TextEncoder();
  // Written at once (nothing in flight); the next lines of the task wait for it and go as one chunk.
  queue.bytes(encoder.encode("a\n"));
  queue.bytes(encoder.encode("b\n"));
  queue.line("c");
  assert.equal(await queue.flush(1000), true);
  queue.line("d");
  queue.bytes(encoder.encode("e\n"));
  queue.bytes(encoder.encode("f\n"));
  assert.equal(await queue.flush(1000), true);
  assert.deepEqual(calls, ["printable a\n", "write b\nc\n", "write d\n", "printable e\nf\n"]);
});
