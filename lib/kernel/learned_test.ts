import assert from "node:assert/strict";
import { learnedEvictions } from "./learned.ts";

const stats = { learned: 0n, answers: 0n, malformed: 0n, unsolicited: 0n, foreign: 0n };

Deno.test("learnedEvictions() counts the kernel's and user space's new addresses beyond the entries held", () => {
  assert.equal(learnedEvictions({ ...stats, inserted: 70_000n, userInserted: 2n }, 65_000), 5_002n);
  assert.equal(learnedEvictions({ ...stats, inserted: 3n, userInserted: 2n }, 5), 0n);
  // More entries than counted inserts (pins of an older build, which counted none): no evictions.
  assert.equal(learnedEvictions({ ...stats, inserted: 0n, userInserted: 0n }, 12), 0n);
});
