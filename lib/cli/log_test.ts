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
