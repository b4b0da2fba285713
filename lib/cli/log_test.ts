import assert from "node:assert/strict";
import { createLogger } from "./log.ts";
import { bufferWriter, palette } from "./output.ts";

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
