import assert from "node:assert/strict";
import { Timers } from "./timers.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("Timers.once() runs its function once, reports a throw, and clear() cancels what is pending", async () => {
  const errors: unknown[] = [];
  const timers = new Timers((error) => errors.push(error));
  let runs = 0;
  timers.once(1, () => runs++);
  timers.once(1, () => {
    throw new Error("boom");
  });
  await sleep(30);
  assert.equal(runs, 1);
  assert.match(String(errors[0]), /boom/);
  timers.once(20, () => runs++);
  timers.clear();
  await sleep(40);
  assert.equal(runs, 1, "cleared before it was due");
});
