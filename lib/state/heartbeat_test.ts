import assert from "node:assert/strict";
import { heartbeatAge, readHeartbeat, writeHeartbeat } from "./heartbeat.ts";

Deno.test("writeHeartbeat() makes the file once, then moves its time; readHeartbeat() reads it back", () => {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-heartbeat-" });
  try {
    assert.equal(readHeartbeat(dir), undefined);
    const first = new Date("2026-11-23T10:00:00.000Z");
    writeHeartbeat(dir, first);
    assert.equal(readHeartbeat(dir)?.getTime(), first.getTime());
    const second = new Date("2026-11-23T10:00:02.000Z");
    writeHeartbeat(dir, second);
    assert.equal(readHeartbeat(dir)?.getTime(), second.getTime());
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("heartbeatAge() counts from the last beat, from the start before the first, never from an older agent's", () => {
  const start = "2026-11-23T10:00:00.000Z";
  const at = (iso: string) => new Date(iso);
  const now = Date.parse("2026-11-23T10:00:12.000Z");
  assert.deepEqual(heartbeatAge(at("2026-11-23T10:00:10.000Z"), start, now), {
    lastMs: Date.parse("2026-11-23T10:00:10.000Z"),
    ageMs: 2000,
  });
  assert.equal(heartbeatAge(undefined, start, now).ageMs, 12_000);
  assert.equal(
    heartbeatAge(at("2026-11-23T09:00:00.000Z"), start, now).ageMs,
    12_000,
    "a previous agent's beat",
  );
});
