import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import { parseDuration } from "./duration.ts";

Deno.test("parseDuration() reads units and their sums", () => {
  assert.equal(parseDuration("30s", "--ttl"), 30_000);
  assert.equal(parseDuration("1h30m", "--ttl"), 5_400_000);
  assert.equal(parseDuration("1500ms", "--ttl"), 1500);
  assert.equal(parseDuration("0.5s", "--ttl"), 500);
  assert.equal(parseDuration("2d", "--ttl"), 172_800_000);
});

Deno.test("parseDuration() refuses bare numbers, unknown units, zero and junk, naming the flag", () => {
  for (const bad of ["30", "5x", "", "0s", "1h 30m", "-1s", "s", "1s2"]) {
    assert.throws(() => parseDuration(bad, "--ttl"), (error: unknown) => {
      assert.ok(error instanceof InputError, bad);
      assert.match(error.message, /^--ttl /);
      return true;
    });
  }
});
