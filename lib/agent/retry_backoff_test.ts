import assert from "node:assert/strict";
import { RetryBackoff } from "./retry_backoff.ts";

Deno.test("RetryBackoff waits 1 s doubling to 60 s after failures, and reports each distinct failure once", async () => {
  let now = 0;
  const reports: string[] = [];
  const backoff = new RetryBackoff((message, ms) => reports.push(`${message} ${ms}`), () => now);
  const tries: number[] = [];
  const failing = () => Promise.reject(new Error("helper answer unparsable"));
  // One check a second for 10 minutes, as the agent's slow tick does.
  for (now = 0; now < 600_000; now += 1000) {
    if (backoff.due("a")) {
      tries.push(now / 1000);
      await backoff.run("a", failing);
    }
  }
  assert.deepEqual(tries.slice(0, 8), [0, 1, 3, 7, 15, 31, 63, 123]);
  assert.deepEqual(tries.slice(8, 11).map((t, i) => t - tries[7 + i]!), [60, 60, 60]);
  assert.deepEqual(reports, ["helper answer unparsable 1000"]);
  await backoff.run("a", () => Promise.reject(new Error("another failure")));
  assert.deepEqual(reports.at(-1), "another failure 60000");
});

Deno.test("RetryBackoff starts over after a success or for a new key", async () => {
  let now = 0;
  const reports: string[] = [];
  const backoff = new RetryBackoff((message) => reports.push(message), () => now);
  await backoff.run("a", () => Promise.reject(new Error("broken")));
  assert.equal(backoff.due("a"), false);
  assert.equal(backoff.due("b"), true, "applied.json written again: try at once");
  await backoff.run("b", () => Promise.reject(new Error("broken")));
  assert.deepEqual(reports, ["broken"], "the same failure for the new key is not reported again");
  now += 1000;
  assert.equal(backoff.due("b"), true);
  await backoff.run("b", () => Promise.resolve());
  assert.equal(backoff.due("b"), true);
  await backoff.run("b", () => Promise.reject(new Error("broken")));
  assert.deepEqual(reports, ["broken", "broken"], "after a success the failure is news again");
});
