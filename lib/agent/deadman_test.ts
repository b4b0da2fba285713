import assert from "node:assert/strict";
import { Deadman } from "./deadman.ts";

function setup(ttlMs: number | undefined) {
  let now = 1_000_000_000n;
  const words: bigint[] = [];
  const expired: Record<string, unknown>[] = [];
  const deadman = new Deadman(
    { setConfig: (config: { deadmanDeadlineNs?: bigint }) => words.push(config.deadmanDeadlineNs!) } as never,
    ttlMs,
    (fields) => expired.push(fields),
    () => now,
  );
  return { deadman, words, expired, advance: (ns: bigint) => now += ns };
}

Deno.test("Deadman.takeOver() reports a deadline the previous agent let pass, and clears the word", () => {
  const { deadman, words, expired } = setup(5000);
  deadman.takeOver(500_000_000n);
  assert.equal(expired.length, 1);
  assert.equal(expired[0]!.source, "previous agent");
  assert.deepEqual(words, [0n]);
  deadman.takeOver(0n);
  assert.equal(expired.length, 1);
});

Deno.test("Deadman.refresh() pushes the deadline ahead and reports when this agent was late", () => {
  const { deadman, words, expired, advance } = setup(1000);
  deadman.refresh();
  assert.deepEqual(words, [2_000_000_000n]);
  advance(500_000_000n);
  deadman.refresh();
  assert.equal(expired.length, 0);
  advance(2_000_000_000n);
  deadman.refresh();
  assert.equal(expired.length, 1);
  assert.equal(expired[0]!.source, "this agent, late");
});

Deno.test("Deadman.refresh() does nothing without --deadman", () => {
  const { deadman, words } = setup(undefined);
  deadman.refresh();
  assert.deepEqual(words, []);
});

Deno.test("Deadman.hold() arms a deadline while a self-check runs, release() disarms it; --deadman keeps its own", () => {
  const { deadman, words } = setup(undefined);
  deadman.hold(5000);
  assert.deepEqual(words, [6_000_000_000n]);
  assert.equal(deadman.deadlineNs, 6_000_000_000n);
  deadman.release();
  assert.deepEqual(words, [6_000_000_000n, 0n]);
  deadman.release();
  assert.equal(words.length, 2, "nothing to release twice");

  const armed = setup(1000);
  armed.deadman.refresh();
  armed.deadman.hold(60_000);
  armed.deadman.release();
  assert.deepEqual(armed.words, [2_000_000_000n], "the refresh's deadline is left alone");
});
