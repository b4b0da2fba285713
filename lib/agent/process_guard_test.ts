import assert from "node:assert/strict";
import { guardProcess } from "./process_guard.ts";

Deno.test("guardProcess() reports an unhandled rejection and an uncaught error instead of ending the process", async () => {
  const reported: string[] = [];
  {
    using _guard = guardProcess((message) => reported.push(message));
    void Promise.reject(new Error("listener failed: EMFILE"));
    setTimeout(() => {
      throw new TypeError("callback threw");
    }, 0);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.deepEqual(reported.sort(), [
    "uncaught error, the agent goes on: TypeError: callback threw",
    "unhandled rejection, the agent goes on: Error: listener failed: EMFILE",
  ]);
});
