import assert from "node:assert/strict";
import { interleave, median, ratios, summarize } from "./stats.ts";

Deno.test("median of odd and even counts, unsorted input untouched", () => {
  const values = [5, 1, 3];
  assert.equal(median(values), 3);
  assert.deepEqual(values, [5, 1, 3]);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.throws(() => median([]), /no samples/);
});

Deno.test("summary and per-round ratios", () => {
  assert.deepEqual(summarize([2, 9, 4]), { median: 4, min: 2, max: 9, n: 3 });
  // Round by round: 110/100, 240/200, 90/100.
  assert.deepEqual(ratios([110, 240, 90], [100, 200, 100]), { median: 1.1, min: 0.9, max: 1.2, n: 3 });
  assert.throws(() => ratios([1], [1, 2]), /1 samples to 2/);
});

Deno.test("interleave rotates the order each round after a warm-up of each", async () => {
  const order: string[] = [];
  const variant = (name: string) => () => {
    order.push(name);
    return Promise.resolve(order.length);
  };
  const samples = await interleave(3, { a: variant("a"), b: variant("b"), c: variant("c") });
  assert.deepEqual(order, ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]);
  assert.deepEqual(samples, { a: [4, 9, 11], b: [5, 7, 12], c: [6, 8, 10] });
});
