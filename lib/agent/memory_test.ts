import assert from "node:assert/strict";
import { fullCollector } from "./memory.ts";

Deno.test("fullCollector() gives a full collection without --expose-gc, and it frees what nothing holds", async () => {
  const gc = await fullCollector();
  assert.ok(gc, "no full collection in this runtime");
  let held: object | undefined = { payload: new Uint8Array(1 << 20) };
  const ref = new WeakRef(held);
  held = undefined;
  // A WeakRef keeps its target alive until the task that made it ends.
  await new Promise((resolve) => setTimeout(resolve, 0));
  gc();
  assert.equal(ref.deref(), undefined);
  assert.equal(await fullCollector(), gc, "one collector per process");
});
