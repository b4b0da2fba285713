import assert from "node:assert/strict";
import {
  EventLog,
  followLines,
  type LogLine,
  parseLine,
  readRecent,
  recentLines,
  rotatedPath,
} from "./event_log.ts";

const event = (n: number) => JSON.stringify({ ts: `2026-01-01T00:00:0${n % 10}Z`, type: "net.connect", n });

function withLog(fn: (path: string) => Promise<void> | void): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-events-" });
  return Promise.resolve(fn(`${dir}/events.jsonl`)).finally(() => Deno.removeSync(dir, { recursive: true }));
}

const numbers = (lines: LogLine[]) =>
  lines.map((line) => line.ok ? line.event.n : `${line.line}:${line.why}`);

Deno.test("parseLine() takes JSON objects with a type and says what is wrong with anything else", () => {
  assert.equal(parseLine("f", 1, event(1)).ok, true);
  assert.deepEqual(parseLine("f", 2, "{oops"), {
    ok: false,
    file: "f",
    line: 2,
    raw: "{oops",
    why: "not JSON",
  });
  assert.equal((parseLine("f", 3, "[1]") as { why: string }).why, "not a JSON object");
  assert.equal((parseLine("f", 4, '{"a":1}') as { why: string }).why, "no event type");
});

Deno.test("recentLines() reads the rotated file, then the current one, and keeps the last N", async () => {
  await withLog((path) => {
    assert.deepEqual(recentLines(path, 10), [], "no log yet");
    Deno.writeTextFileSync(rotatedPath(path), [1, 2, 3].map(event).join("\n") + "\n");
    Deno.writeTextFileSync(
      path,
      [4, 5].map(event).join("\n") + "\n\nnot json\n" + event(6) + "\n" + '{"type":',
    );
    assert.deepEqual(
      numbers(recentLines(path, 100)),
      [1, 2, 3, 4, 5, "4:not JSON", 6],
      "the partial last line waits",
    );
    assert.deepEqual(numbers(recentLines(path, 3)), [5, "4:not JSON", 6]);
    assert.deepEqual(recentLines(path, 0), []);
    const [first] = recentLines(path, 100);
    assert.equal(first?.file, rotatedPath(path));
    assert.equal(first?.line, 1);
  });
});

Deno.test("followLines() prints appended lines, a line written in two pieces once, across rotation and truncation", async () => {
  await withLog(async (path) => {
    Deno.writeTextFileSync(path, event(1) + "\n");
    const { end } = readRecent(path, 1);
    const seen: LogLine[] = [];
    const stop = new AbortController();
    const following = followLines(path, (line) => seen.push(line), {
      signal: stop.signal,
      intervalMs: 10,
      from: end,
    });
    const until = async (n: number) => {
      for (let i = 0; i < 300 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    };
    const append = (text: string) => Deno.writeTextFileSync(path, text, { append: true });
    append(event(2) + "\n" + event(3).slice(0, 10));
    await until(1);
    await new Promise((r) => setTimeout(r, 50));
    append(event(3).slice(10) + "\n");
    await until(2);
    // Rotation: one more line into the old file, renamed away, a new file started.
    append(event(4) + "\n");
    Deno.renameSync(path, rotatedPath(path));
    Deno.writeTextFileSync(path, event(5) + "\nbroken\n");
    await until(5);
    Deno.writeTextFileSync(path, event(7) + "\n"); // truncated and rewritten in place
    await until(6);
    stop.abort();
    await following;
    assert.deepEqual(numbers(seen), [2, 3, 4, 5, "2:not JSON", 7]);
    const five = seen[3];
    assert.equal(five?.file, path);
    assert.equal(five?.line, 1, "the new file's own line numbers");
  });
});

Deno.test("followLines() waits for a log that does not exist yet", async () => {
  await withLog(async (path) => {
    const seen: LogLine[] = [];
    const stop = new AbortController();
    const following = followLines(path, (line) => seen.push(line), { signal: stop.signal, intervalMs: 10 });
    await new Promise((r) => setTimeout(r, 30));
    Deno.writeTextFileSync(path, event(1) + "\n");
    for (let i = 0; i < 300 && seen.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
    stop.abort();
    await following;
    assert.deepEqual(numbers(seen), [1]);
  });
});

Deno.test("followLines() from where readRecent() stopped misses nothing written or rotated in between", async () => {
  await withLog(async (path) => {
    Deno.writeTextFileSync(path, event(1) + "\n" + event(2).slice(0, 5));
    const { lines, end } = readRecent(path, 10);
    assert.deepEqual(numbers(lines), [1], "the half line is not shown yet");
    // Between the read and the follow: the half line completed, one more, then a rotation and a new file.
    Deno.writeTextFileSync(path, event(2).slice(5) + "\n" + event(3) + "\n", { append: true });
    Deno.renameSync(path, rotatedPath(path));
    Deno.writeTextFileSync(path, event(4) + "\n");
    const seen: LogLine[] = [];
    const stop = new AbortController();
    const following = followLines(path, (line) => seen.push(line), {
      signal: stop.signal,
      intervalMs: 10,
      from: end,
    });
    for (let i = 0; i < 300 && seen.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
    stop.abort();
    await following;
    assert.deepEqual(numbers(seen), [2, 3, 4]);
    assert.deepEqual(seen.map((line) => line.line), [2, 3, 1]);
  });
});

Deno.test("EventLog appends JSON lines and rotates to .1 before a line would pass the limit", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/events.jsonl`;
    const line = (n: number) => ({ n, pad: "x".repeat(40) }); // 57 bytes a line with its newline
    {
      using log = new EventLog(path, 200);
      for (let n = 1; n <= 3; n++) log.append(line(n));
      assert.equal(Deno.statSync(path).size, 171);
      log.append(line(4));
      log.append(line(5));
      for (let n = 6; n <= 8; n++) log.append(line(n));
    }
    const read = (file: string) => Deno.readTextFileSync(file).trim().split("\n").map((l) => JSON.parse(l).n);
    assert.deepEqual(read(`${path}.1`), [4, 5, 6]);
    assert.deepEqual(read(path), [7, 8]);
    // A new log on an existing file goes on appending, counting what is there.
    using again = new EventLog(path, 200);
    again.append(line(9));
    again.append(line(10));
    assert.deepEqual(read(`${path}.1`), [7, 8, 9]);
    assert.deepEqual(read(path), [10]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("EventLog.appendText() writes UTF-8 batches small and large byte for byte, one after another", () =>
  withLog((path) => {
    using log = new EventLog(path, 64 * 1024 * 1024);
    const small = `${JSON.stringify({ type: "x", comm: "é日本😀\u009b" })}\n`;
    // Past the buffer the log keeps for reuse: encoded on its own.
    const large = `${JSON.stringify({ type: "y", path: "ü".repeat(600_000) })}\n`;
    log.appendText(small);
    log.appendText(large);
    log.appendText(small);
    assert.equal(Deno.readTextFileSync(path), small + large + small);
    assert.equal(Deno.statSync(path).size, new TextEncoder().encode(small + large + small).length);
  }));
