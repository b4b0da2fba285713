import assert from "node:assert/strict";
import { findWordTampering, type WordExpectations } from "./tamper_guard.ts";
import type { GuardedWord } from "../kernel/mode_words.ts";

const NOW = 1_000_000_000_000n;

function expected(change: Partial<WordExpectations> = {}): WordExpectations {
  return { forceAudit: 0n, breakGlassAsked: () => false, deadman: 0n, enforceSignal: 0n, ...change };
}

function words(values: Partial<Record<GuardedWord, bigint>>): (word: GuardedWord) => bigint {
  return (word) => values[word] ?? 0n;
}

const summary = (found: ReturnType<typeof findWordTampering>) =>
  found.map(({ what, found, restored, value }) => [what, found, restored, value]);

Deno.test("findWordTampering() finds nothing when the words are as the agent set them", () => {
  assert.deepEqual(findWordTampering(words({}), expected(), NOW), []);
  const floor = expected({ forceAudit: 1n, deadman: NOW + 5n, enforceSignal: 9n });
  assert.deepEqual(
    findWordTampering(words({ forceAudit: 1n, deadman: NOW + 5n, enforceSignal: 9n }), floor, NOW),
    [],
  );
});

Deno.test("findWordTampering() puts the forced-audit word back to the floor, either way", () => {
  assert.deepEqual(summary(findWordTampering(words({ forceAudit: 1n }), expected(), NOW)), [
    ["force_audit", 1, 0, 0n],
  ]);
  assert.deepEqual(summary(findWordTampering(words({}), expected({ forceAudit: 1n }), NOW)), [
    ["force_audit", 0, 1, 1n],
  ]);
});

Deno.test("findWordTampering() clears break-glass only when nobody asked for it, and never sets it", () => {
  assert.deepEqual(summary(findWordTampering(words({ breakGlass: 1n }), expected(), NOW)), [
    ["break_glass", 1, 0, 0n],
  ]);
  const deadline = NOW + 60_000_000_000n;
  assert.deepEqual(summary(findWordTampering(words({ breakGlass: deadline }), expected(), NOW)), [
    ["break_glass", Number(deadline), 0, 0n],
  ]);
  assert.deepEqual(
    findWordTampering(words({ breakGlass: 1n }), expected({ breakGlassAsked: () => true }), NOW),
    [],
  );
  // A deadline already past is off as the hooks read it: nothing to undo.
  assert.deepEqual(findWordTampering(words({ breakGlass: NOW - 1n }), expected(), NOW), []);
  let asked = 0;
  findWordTampering(words({}), expected({ breakGlassAsked: () => (asked++, false) }), NOW);
  assert.equal(asked, 0, "the marker is only read when the word is on");
});

Deno.test("findWordTampering() puts back the deadman deadline and the kill-on-deny word", () => {
  assert.deepEqual(
    summary(findWordTampering(words({ deadman: NOW - 1n }), expected({ deadman: NOW + 9n }), NOW)),
    [
      ["deadman", Number(NOW - 1n), Number(NOW + 9n), NOW + 9n],
    ],
  );
  assert.deepEqual(summary(findWordTampering(words({ deadman: 5n }), expected(), NOW)), [[
    "deadman",
    5,
    0,
    0n,
  ]]);
  assert.deepEqual(
    summary(findWordTampering(words({ enforceSignal: 0n }), expected({ enforceSignal: 9n }), NOW)),
    [
      ["enforce_signal", 0, 9, 9n],
    ],
  );
});

Deno.test("findWordTampering() shows a word too large for a number as a decimal string", () => {
  const huge = 2n ** 60n;
  const [found] = findWordTampering(words({ deadman: huge }), expected(), NOW);
  assert.equal(found?.found, huge.toString());
});
