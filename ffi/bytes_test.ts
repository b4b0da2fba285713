import assert from "node:assert/strict";
import { concatBytes } from "./bytes.ts";

Deno.test("concatBytes() joins chunks in order, empty ones included, into a copy", () => {
  assert.deepEqual(
    concatBytes([Uint8Array.of(1, 2), Uint8Array.of(), Uint8Array.of(3)]),
    Uint8Array.of(1, 2, 3),
  );
  assert.deepEqual(concatBytes([]), new Uint8Array(0));
  const one = Uint8Array.of(4);
  const joined = concatBytes([one]);
  one[0] = 5;
  assert.deepEqual(joined, Uint8Array.of(4));
});
