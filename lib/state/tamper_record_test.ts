import assert from "node:assert/strict";
import {
  describeTampering,
  readFloorRecord,
  readTamperRecord,
  recentTampering,
  recordTampering,
  removeFloorRecord,
  TAMPER_RECENT_MS,
  tamperFile,
  writeFloorRecord,
} from "./tamper_record.ts";

function withDir(fn: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-tamper-" });
  try {
    fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("recordTampering() counts by kind across calls and keeps the newest first", () => {
  withDir((dir) => {
    assert.deepEqual(readTamperRecord(dir), { total: {}, recent: [] });
    recordTampering(dir, [{ what: "force_audit", found: 1, restored: 0 }], 42);
    recordTampering(dir, [
      { what: "link", found: "unpinned", restored: "pinned", link: "aegis_connect4" },
      { what: "force_audit", found: 1, restored: 0 },
    ], 42);
    const record = readTamperRecord(dir);
    assert.deepEqual(record.total, { force_audit: 2, link: 1 });
    assert.deepEqual(record.recent.map((entry) => entry.what), ["force_audit", "link", "force_audit"]);
    assert.equal(record.recent[0]?.pid, 42);
    assert.equal(Deno.statSync(tamperFile(dir)).mode! & 0o777, 0o600);
  });
});

Deno.test("recentTampering() keeps only the last TAMPER_RECENT_MS", () => {
  const now = Date.parse("2026-01-01T12:00:00Z");
  const at = (msAgo: number) => new Date(now - msAgo).toISOString();
  const entry = { what: "deadman" as const, found: 1, restored: 0, pid: 1 };
  const record = {
    total: {},
    recent: [{ ...entry, at: at(1000) }, { ...entry, at: at(TAMPER_RECENT_MS + 1) }],
  };
  assert.deepEqual(recentTampering(record, now).map((e) => e.at), [at(1000)]);
});

Deno.test("readTamperRecord() treats an unreadable record as empty", () => {
  withDir((dir) => {
    Deno.writeTextFileSync(tamperFile(dir), "{not json");
    assert.deepEqual(readTamperRecord(dir), { total: {}, recent: [] });
    Deno.writeTextFileSync(tamperFile(dir), JSON.stringify({ total: { force_audit: -1 }, recent: [] }));
    assert.deepEqual(readTamperRecord(dir), { total: {}, recent: [] });
  });
});

Deno.test("describeTampering() says which word, the value found and the value restored", () => {
  assert.equal(
    describeTampering({ what: "force_audit", found: 1, restored: 0 }),
    "the force-audit word was 1, restored to 0",
  );
  assert.equal(
    describeTampering({ what: "enforce_signal", found: 0, restored: 9 }),
    "the enforce-signal word was 0, restored to 9",
  );
  assert.equal(
    describeTampering({ what: "link", found: "unpinned", restored: "pinned", link: "aegis_bind4" }),
    "the pin of link aegis_bind4 was removed, pinned again",
  );
});

Deno.test("the floor record says who asked for forced audit until it is removed", () => {
  withDir((dir) => {
    assert.equal(readFloorRecord(dir), undefined);
    writeFloorRecord(dir, "run --audit", 7);
    assert.deepEqual([readFloorRecord(dir)?.by, readFloorRecord(dir)?.pid], ["run --audit", 7]);
    removeFloorRecord(dir);
    assert.equal(readFloorRecord(dir), undefined);
  });
});
