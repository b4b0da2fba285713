import assert from "node:assert/strict";
import { interfaceNames } from "./names.ts";

Deno.test("interfaceNames() asks the kernel once a second per index, found or not", () => {
  const asked: number[] = [];
  let clock = 0;
  let names: Record<number, string> = { 2: "eth0" };
  const name = interfaceNames((ifindex) => (asked.push(ifindex), names[ifindex]), () => clock);
  assert.equal(name(2), "eth0");
  assert.equal(name(2), "eth0");
  assert.equal(name(9), undefined);
  assert.equal(name(9), undefined);
  assert.deepEqual(asked, [2, 9], "one question per index within a second");
  names = { 2: "wan0" };
  clock = 999;
  assert.equal(name(2), "eth0", "still the name asked less than a second ago");
  clock = 1000;
  assert.equal(name(2), "wan0", "renamed: the new name a second later");
  assert.deepEqual(asked, [2, 9, 2]);
});
