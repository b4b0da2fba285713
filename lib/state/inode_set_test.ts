import assert from "node:assert/strict";
import { encodeInodes, InodeSet } from "./inode_set.ts";

Deno.test("encodeInodes() round-trips inodes past 2^53 per device, once each, and finds what was not seen", () => {
  const big = (1n << 63n) + 5n;
  const identities = [
    { dev: 9, ino: 42n },
    { dev: 7, ino: big },
    { dev: 7, ino: 3n },
    { dev: 7, ino: 3n },
    { dev: 9, ino: 1n },
  ];
  const encoded = encodeInodes(identities);
  assert.deepEqual(encoded.map(({ dev, count }) => [dev, count]), [[7, 2], [9, 2]]);
  const set = new InodeSet(JSON.parse(JSON.stringify(encoded)));
  assert.equal(set.size, 4);
  assert.equal(set.see(7, big), true);
  assert.equal(set.see(9, 42n), true);
  assert.equal(set.see(9, 3n), false, "an inode of another device");
  assert.equal(set.see(8, 42n), false, "a device not in the set");
  assert.deepEqual([...set.unseen()], [{ dev: 7, ino: 3n }, { dev: 9, ino: 1n }]);
});

Deno.test("encodeInodes() keeps a million consecutive-ish inodes in about a byte and a half each", () => {
  const identities = Array.from({ length: 1_000_000 }, (_, i) => ({ dev: 1, ino: BigInt(1000 + i * 3) }));
  const [encoded] = encodeInodes(identities);
  assert.ok(encoded!.inodes.length < 1_500_000, `${encoded!.inodes.length} base64 characters`);
  const set = new InodeSet([encoded!]);
  assert.equal(set.size, 1_000_000);
  assert.equal(set.see(1, 1000n + 3n * 999_999n), true);
  assert.equal(set.see(1, 1001n), false);
});

Deno.test("InodeSet rejects a list whose count does not match its bytes", () => {
  const [encoded] = encodeInodes([{ dev: 1, ino: 5n }, { dev: 1, ino: 9n }]);
  assert.throws(() => new InodeSet([{ ...encoded!, count: 3 }]), /holds 2 inodes, not 3/);
  assert.throws(() => new InodeSet([{ ...encoded!, count: 1 }]), /holds more than 1 inodes/);
});
