import assert from "node:assert/strict";
import {
  appliedPolicy,
  type ApplyIntent,
  clearApplyIntent,
  readApplied,
  readApplyIntent,
  settlePending,
  writeApplied,
  writeApplyIntent,
} from "./apply_state.ts";
import { appendHistory, type HistoryEntry, type HistoryOutcome } from "./history.ts";

function entry(seq: number, outcome: HistoryOutcome): HistoryEntry {
  return {
    seq,
    time: "2026-01-01T00:00:00.000Z",
    uid: 0,
    source: "p.yaml",
    kind: "policy",
    name: "p",
    version: seq,
    sha256: "a".repeat(64),
    contentSha256: "b".repeat(64),
    outcome,
  };
}

const intent = (seq: number, fromGeneration: number, extra: Partial<ApplyIntent> = {}): ApplyIntent => ({
  seq,
  fromGeneration,
  outcome: "applied",
  time: "2026-01-01T00:00:00.000Z",
  ...extra,
});

const applied = (seq: number, generation: number) => ({
  seq,
  name: "p",
  version: seq,
  sha256: "a".repeat(64),
  contentSha256: "b".repeat(64),
  generation,
  time: "2026-01-01T00:00:00.000Z",
});

Deno.test("settlePending() marks a pending entry in force when the kernel flipped after its intent", () => {
  const entries = [entry(1, "applied"), entry(2, "pending")];
  assert.deepEqual(settlePending(entries, intent(2, 0, { raiseCounterTo: 2 }), undefined, 1), [
    { seq: 2, outcome: "applied", raiseCounterTo: 2 },
  ]);
  assert.deepEqual(settlePending(entries, intent(2, 1, { outcome: "rolled-back" }), applied(2, 0), 1), [
    { seq: 2, outcome: "rolled-back" },
  ]);
});

Deno.test("settlePending() marks failed a pending entry killed before the flip or before its intent", () => {
  const entries = [entry(1, "applied"), entry(2, "pending")];
  assert.deepEqual(settlePending(entries, intent(2, 1), applied(1, 1), 1), [{ seq: 2, outcome: "failed" }]);
  assert.deepEqual(settlePending(entries, undefined, applied(1, 1), 1), [{ seq: 2, outcome: "failed" }]);
  assert.deepEqual(settlePending(entries, intent(1, 0), undefined, 1), [{ seq: 2, outcome: "failed" }]);
  assert.deepEqual(settlePending([entry(1, "applied")], intent(1, 0), undefined, 1), []);
});

Deno.test("apply intent and applied records round-trip and clear", () => {
  const dir = Deno.makeTempDirSync();
  try {
    assert.equal(readApplyIntent(dir), undefined);
    writeApplyIntent(dir, intent(3, 1));
    assert.deepEqual(readApplyIntent(dir), intent(3, 1));
    clearApplyIntent(dir);
    assert.equal(readApplyIntent(dir), undefined);
    writeApplied(dir, applied(3, 0));
    assert.deepEqual(readApplied(dir), applied(3, 0));
    Deno.writeTextFileSync(`${dir}/applied.json`, "{");
    assert.throws(() => readApplied(dir), /Corrupt state file .*applied\.json: not valid JSON/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("appliedPolicy() returns the policy in force with its text, skipping pending and failed", () => {
  const dir = Deno.makeTempDirSync();
  try {
    assert.equal(appliedPolicy(dir), undefined);
    const add = (content: string, outcome: HistoryOutcome) => {
      const { seq: _seq, time: _time, contentSha256: _content, ...fields } = entry(1, outcome);
      appendHistory(dir, { ...fields, content });
    };
    add("first\n", "applied");
    add("second\n", "failed");
    add("third\n", "pending");
    const found = appliedPolicy(dir);
    assert.equal(found?.entry.seq, 1);
    assert.equal(found?.policyText, "first\n");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
