import assert from "node:assert/strict";
import { isLeftover } from "./leftover.ts";

const PREFIX = "aegisbpf-x-";

Deno.test("isLeftover() leaves other names alone and takes a name without a pid for a leftover", () => {
  assert.equal(isLeftover(`other-${Deno.pid}-ab12`, PREFIX), false);
  assert.equal(isLeftover(`${PREFIX}-ab12`, PREFIX), true);
  assert.equal(isLeftover(`${PREFIX}0-ab12`, PREFIX), true);
  assert.equal(isLeftover(`${PREFIX}zz-ab12`, PREFIX), true);
});

Deno.test("isLeftover() never takes a running process's name for a leftover, whatever the radix", () => {
  // Without the right to read /proc/PID (these unit tests run without --allow-all) it throws rather than
  // guess: the pid is not proven gone.
  for (const radix of [10, 36]) {
    try {
      assert.equal(isLeftover(`${PREFIX}${Deno.pid.toString(radix)}-ab12`, PREFIX, radix), false);
    } catch (error) {
      assert.ok(error instanceof Deno.errors.NotCapable, String(error));
    }
  }
});
