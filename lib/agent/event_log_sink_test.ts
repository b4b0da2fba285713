import assert from "node:assert/strict";
import { recentLines } from "./event_log.ts";
import { EventLogSink } from "./event_log_sink.ts";

Deno.test("EventLogSink reopens the log after failures and reports the outage once, with the loss", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/state/events.jsonl`;
    Deno.mkdirSync(`${dir}/state`);
    const warnings: string[] = [];
    // 20 bytes: every second event rotates the log, and a rotation needs the directory.
    const sink = new EventLogSink(path, (message) => warnings.push(message), 20);
    sink.append({ type: "one" });
    // The state directory vanishes: every write fails, none throws.
    Deno.removeSync(`${dir}/state`, { recursive: true });
    for (let i = 0; i < 5; i++) sink.append({ type: "lost" });
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0]!,
      /^event log .*events\.jsonl: .*: events go to stdout only until it can be written again$/,
    );
    Deno.mkdirSync(`${dir}/state`);
    sink.append({ type: "two" });
    sink.append({ type: "three" });
    sink.close();
    assert.deepEqual(warnings.slice(1), [`event log ${path}: writing again; 5 events were not written`]);
    const types = recentLines(path, 10).map((line) => line.ok ? line.event.type : `bad: ${line.raw}`);
    assert.deepEqual(types, ["two", "three"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("EventLogSink starts a new line after a write cut short", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/events.jsonl`;
    const warnings: string[] = [];
    const sink = new EventLogSink(path, (message) => warnings.push(message));
    sink.append({ type: "one" });
    // A cycle cannot be written: the write fails; the next event must still be a whole line of its own.
    const cyclic: Record<string, unknown> = { type: "cyclic" };
    cyclic.self = cyclic;
    sink.append(cyclic);
    Deno.writeTextFileSync(path, '{"type":"half', { append: true });
    sink.append({ type: "two" });
    sink.close();
    assert.equal(warnings.length, 2);
    const lines = recentLines(path, 10);
    assert.deepEqual(lines.map((line) => line.ok ? line.event.type : "bad"), ["one", "bad", "two"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("EventLogSink.appendLine() writes the lines of one task together at its end, in order", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/events.jsonl`;
    const sink = new EventLogSink(path, () => {});
    for (let n = 1; n <= 3; n++) sink.appendLine(JSON.stringify({ type: `e${n}` }));
    assert.throws(() => Deno.statSync(path), Deno.errors.NotFound, "nothing written before the task ends");
    await Promise.resolve();
    const lines = recentLines(path, 10);
    assert.deepEqual(lines.map((line) => line.ok ? line.event.type : "bad"), ["e1", "e2", "e3"]);
    sink.close();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("EventLogSink.appendBytes() writes lines made as bytes in order with the others, copied at once", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/events.jsonl`;
    const sink = new EventLogSink(path, (message) => assert.fail(`a warning: ${message}`));
    const reused = new Uint8Array(64);
    const encoder = new TextEncoder();
    const bytes = (type: string) => {
      const { written } = encoder.encodeInto(`{"type":"${type}"}\n`, reused);
      sink.appendBytes(reused.subarray(0, written));
    };
    bytes("one");
    sink.appendLine(`{"type":"twö"}`);
    bytes("three");
    // Written at the end of the task, all in one go.
    assert.throws(() => Deno.statSync(path), Deno.errors.NotFound);
    await Promise.resolve();
    sink.close();
    assert.deepEqual(recentLines(path, 10).map((line) => line.ok ? line.event.type : `bad: ${line.raw}`), [
      "one",
      "twö",
      "three",
    ]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
