import assert from "node:assert/strict";
import {
  AEGIS_EVENT,
  decodeConfig,
  decodeEvent,
  encodeConfig,
  encodeInodeKey,
  encodeLpm4Key,
  encodeRule,
  LAYOUTS,
} from "./layout.ts";

type BtfMember = { name: string; bits_offset: number };
type BtfType = { id: number; kind: string; name: string; size?: number; members?: BtfMember[] };

const OBJECT = new URL("../bpf/build/aegis.bpf.o", import.meta.url);

async function objectBtf(): Promise<BtfType[]> {
  const output = await new Deno.Command("bpftool", {
    args: ["--json", "btf", "dump", "file", OBJECT.pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `bpftool could not read the BTF of ${OBJECT.pathname} (run deno task build:bpf): ${
        new TextDecoder().decode(output.stderr)
      }`,
    );
  }
  return (JSON.parse(new TextDecoder().decode(output.stdout)) as { types: BtfType[] }).types;
}

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

Deno.test("encodeConfig() and decodeConfig() round-trip", () => {
  const config = { mode: 1, activeGen: 1, breakGlass: 0, deadmanDeadlineNs: 123456789012345n };
  const bytes = encodeConfig(config);
  assert.equal(bytes.byteLength, 24);
  assert.deepEqual(decodeConfig(bytes), config);
});

Deno.test("encodeLpm4Key() counts the generation word in the prefix length", () => {
  const bytes = encodeLpm4Key({ gen: 1, addr: new Uint8Array([10, 0, 0, 0]), prefixLength: 8 });
  assert.deepEqual([...bytes], [40, 0, 0, 0, 1, 0, 0, 0, 10, 0, 0, 0]);
  assert.throws(
    () => encodeLpm4Key({ gen: 0, addr: new Uint8Array([1, 2, 3]), prefixLength: 8 }),
    RangeError,
  );
  assert.throws(() => encodeLpm4Key({ gen: 0, addr: new Uint8Array(4), prefixLength: 33 }), RangeError);
});

Deno.test("encodeInodeKey() and encodeRule() write little-endian fields at their offsets", () => {
  assert.deepEqual(
    [...encodeInodeKey({ ino: 0x0102n, dev: 0x00800001, gen: 1 })],
    [2, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0x80, 0, 1, 0, 0, 0],
  );
  assert.deepEqual([...encodeRule({ ruleId: 258, action: 0 })], [2, 1, 0, 0, 0, 0, 0, 0]);
});

Deno.test("decodeEvent() reads every field and stops comm at NUL", () => {
  const bytes = new Uint8Array(AEGIS_EVENT.size);
  const view = new DataView(bytes.buffer);
  const f = AEGIS_EVENT.fields;
  view.setBigUint64(f.ts_boot_ns.offset, 99n, true);
  view.setBigUint64(f.ino.offset, 1234n, true);
  view.setUint32(f.pid.offset, 4321, true);
  view.setUint32(f.rule_id.offset, 7, true);
  view.setUint32(f.count.offset, 3, true);
  view.setUint8(f.hook.offset, 2);
  view.setUint8(f.decision.offset, 1);
  view.setUint16(f.dport.offset, 443, true);
  bytes.set([127, 0, 0, 2], f.daddr.offset);
  bytes.set(new TextEncoder().encode("curl\0junk"), f.comm.offset);
  const event = decodeEvent(bytes);
  assert.equal(event.tsBootNs, 99n);
  assert.equal(event.ino, 1234n);
  assert.equal(event.pid, 4321);
  assert.equal(event.ruleId, 7);
  assert.equal(event.count, 3);
  assert.equal(event.hook, 2);
  assert.equal(event.decision, 1);
  assert.equal(event.dport, 443);
  assert.deepEqual([...event.daddr.subarray(0, 4)], [127, 0, 0, 2]);
  assert.equal(event.comm, "curl");
  assert.throws(() => decodeEvent(new Uint8Array(10)), RangeError);
});
