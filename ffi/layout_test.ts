import assert from "node:assert/strict";
import { objectBtf } from "./btf_test_support.ts";
import {
  decodeRule,
  decodeRuleHitSlots,
  decodeU64,
  decodeXdpSlots,
  encodeNetKey,
  encodeRule,
  encodeRuleKey,
  encodeSessionKey,
  encodeU32,
  encodeU64,
  LAYOUTS,
  ruleHitSlotOf,
} from "./layout.ts";
import { RULE_HIT } from "./constants.ts";

Deno.test("layout mirrors match the BTF of the built BPF object, field by field", async () => {
  const types = await objectBtf();
  for (const layout of LAYOUTS) {
    const btf = types.find((type) => type.kind === "STRUCT" && type.name === layout.name);
    assert.ok(btf, `struct ${layout.name} is missing from the object's BTF`);
    assert.equal(btf.size, layout.size, `sizeof(struct ${layout.name})`);
    const members = btf.members ?? [];
    assert.deepEqual(
      members.map((member) => member.name).sort(),
      Object.keys(layout.fields).sort(),
      `fields of struct ${layout.name}`,
    );
    for (const member of members) {
      assert.equal(
        layout.fields[member.name]?.offset,
        member.bits_offset / 8,
        `offset of ${layout.name}.${member.name}`,
      );
    }
  }
});

Deno.test("encodeU32() and encodeU64() write little-endian words", () => {
  assert.deepEqual([...encodeU32(0x01020304)], [4, 3, 2, 1]);
  assert.equal(decodeU64(encodeU64(123456789012345n)), 123456789012345n);
});

Deno.test("encodeNetKey() counts space, protocol and port bits in the prefix and puts the port big-endian", () => {
  const bytes = encodeNetKey({
    space: 1,
    family: 4,
    protocol: 6,
    port: 443,
    addr: new Uint8Array([10, 0, 0, 0]),
    prefixLength: 8,
  });
  assert.equal(bytes.byteLength, 28);
  assert.deepEqual([...bytes.subarray(0, 15)], [64, 0, 0, 0, 4, 1, 0, 0, 6, 1, 187, 10, 0, 0, 0]);
});

Deno.test("encodeNetKey() refuses an address or prefix that does not fit the family", () => {
  const key = { space: 1, family: 4 as const, protocol: 6, port: 0, prefixLength: 8 };
  assert.throws(() => encodeNetKey({ ...key, addr: new Uint8Array([1, 2, 3]) }), RangeError);
  assert.throws(() => encodeNetKey({ ...key, addr: new Uint8Array(4), prefixLength: 33 }), RangeError);
  assert.throws(
    () => encodeNetKey({ ...key, family: 6, addr: new Uint8Array(16), prefixLength: 129 }),
    RangeError,
  );
});

Deno.test("encodeSessionKey() counts ifindex, port and family bytes in the prefix", () => {
  const bytes = encodeSessionKey({
    ifindex: 3,
    family: 6,
    addr: new Uint8Array(16),
    prefixLength: 64,
    port: 22,
  });
  assert.deepEqual([...bytes.subarray(0, 12)], [128, 0, 0, 0, 3, 0, 0, 0, 0, 22, 6, 0]);
});

Deno.test("encodeRuleKey() and encodeRule() write little-endian fields at their offsets", () => {
  const key = encodeRuleKey({ kind: 2, a: 0x0102n, b: 0x00800001 });
  assert.deepEqual([...key], [2, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0x80, 0, 2, 0, 0, 0]);
  assert.deepEqual(
    [...encodeRuleKey({ kind: 2, a: 0x0102, b: 0x00800001 })],
    [...key],
    "a Number writes as a u64",
  );
  const rule = { ruleId: 258, allow: true, prefixLength: 24 };
  assert.deepEqual([...encodeRule(rule)], [2, 1, 0, 0, 1, 24, 0, 0]);
  assert.deepEqual(decodeRule(encodeRule(rule)), rule);
});

Deno.test("decodeXdpSlots() reads each CPU's slot of an interface, and skips a CPU that took none", () => {
  const bytes = new Uint8Array(3 * 24);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 7, true); // CPU 0: ifindex 7
  view.setBigUint64(8, 5n, true);
  view.setBigUint64(16, 2n, true);
  view.setUint32(48, 9, true); // CPU 2: ifindex 9 (CPU 1 took none)
  view.setBigUint64(56, 1n, true);
  assert.deepEqual(decodeXdpSlots(bytes), [
    { ifindex: 7, action: 1, packets: 5n },
    { ifindex: 7, action: 2, packets: 2n },
    { ifindex: 9, action: 1, packets: 1n },
    { ifindex: 9, action: 2, packets: 0n },
  ]);
});

Deno.test("decodeRuleHitSlots() reads the rule each CPU's slot holds, rule 0 included, and skips a free one", () => {
  const bytes = new Uint8Array(3 * 16);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, 1n << 32n, true); // CPU 0: rule 0
  view.setBigUint64(8, 4n, true);
  view.setBigUint64(32, 1n << 32n | 513n, true); // CPU 2: rule 513 (CPU 1's slot is free)
  view.setBigUint64(40, 6n, true);
  assert.deepEqual(decodeRuleHitSlots(bytes), [{ ruleId: 0, count: 4n }, { ruleId: 513, count: 6n }]);
});

Deno.test("ruleHitSlotOf() names the generation and decision of each row of rule_hit_slots", () => {
  assert.deepEqual(ruleHitSlotOf(0), { gen: 0, decision: 0 });
  assert.deepEqual(ruleHitSlotOf(255), { gen: 0, decision: 0 });
  assert.deepEqual(ruleHitSlotOf(256), { gen: 0, decision: 1 });
  assert.deepEqual(ruleHitSlotOf(512 + 7), { gen: 0, decision: RULE_HIT.NAME_ALLOW });
  assert.deepEqual(ruleHitSlotOf(768 + 7), { gen: 1, decision: 0 });
  assert.deepEqual(ruleHitSlotOf(1535), { gen: 1, decision: RULE_HIT.NAME_ALLOW });
});
