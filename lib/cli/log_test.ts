import assert from "node:assert/strict";
import { createLogger, queuedLogger } from "./log.ts";
import { bufferWriter } from "./output.ts";
import { palette } from "../text/palette.ts";

const now = () => new Date("2026-01-02T03:04:05.000Z");

Deno.test("createLogger() drops messages below the level and writes text lines with fields", () => {
  const writer = bufferWriter();
  const log = createLogger({ format: "text", level: "warn", writer, palette: palette(false), now });
  log.info("hidden");
  log.warn("key expires soon", { keyid: "ab12", reason: "a b" });
  assert.equal(writer.text(), 'aegisbpf: warn: key expires soon keyid=ab12 reason="a b"\n');
  assert.equal(log.enabled("debug"), false);
});

Deno.test("createLogger() writes one JSON object per line for --log-format json", () => {
  const writer = bufferWriter();
  const log = createLogger({ format: "json", level: "debug", writer, palette: palette(false), now });
  log.debug("loaded", { keys: 2 });
  assert.deepEqual(JSON.parse(writer.text()), {
    ts: "2026-01-02T03:04:05.000Z",
    level: "debug",
    msg: "loaded",
    keys: 2,
  });
});

Deno.test("createLogger() keeps a message on one line and escapes what a terminal would act on", () => {
  const writer = bufferWriter();
  const log = createLogger({ format: "text", level: "info", writer, palette: palette(false), now });
  log.warn("/tmp/a\naegisbpf: info: forged\x1b[2J", { comm: "x\x9b", path: "/a b\u202e" });
  assert.equal(
    writer.text(),
    'aegisbpf: warn: /tmp/a\\x0aaegisbpf: info: forged\\x1b[2J comm=x\\u009b path="/a b\\u202e"\n',
  );
  const json = bufferWriter();
  createLogger({ format: "json", level: "info", writer: json, palette: palette(false), now })
    .warn("m\x9b", { comm: "\x7f" });
  assert.ok(json.text().includes('"msg":"m\\u009b","comm":"\\u007f"'), json.text());
});

Deno.test("queuedLogger() never waits for a stalled reader, and reports the lines it dropped once caught up", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let written = "";
  const sink = {
    write: async (data: Uint8Array) => {
      await gate;
      written += new TextDecoder().decode(data);
      return data.length;
    },
  };
  const log = queuedLogger({ format: "text", level: "info", palette: palette(false) }, sink);
  // Far more than the queue holds: every call returns at once.
  const long = "x".repeat(64 * 1024);
  for (let i = 0; i < 100; i++) log.warn(`${i} ${long}`);
  assert.equal(written, "");
  release();
  assert.equal(await log.flush(5000), true);
  const lines = written.split("\n").filter((line) => line !== "");
  assert.match(lines[0]!, /^aegisbpf: warn: 0 x+$/);
  const dropped = 100 - (lines.length - 1);
  assert.ok(dropped > 0);
  assert.equal(
    lines.at(-1),
    `aegisbpf: warn: stderr: ${dropped} log lines not written: its reader was too slow`,
  );
});
