import assert from "node:assert/strict";
import { type BtfType, objectBtf } from "./btf_test_support.ts";
import { KERNEL_ENUMS } from "./constants.ts";

type BtfEnum = Pick<BtfType, "kind" | "name" | "values">;

async function objectEnums(): Promise<BtfEnum[]> {
  return (await objectBtf()).filter((type) => type.kind === "ENUM" && type.name.startsWith("aegis_"));
}

/** The enum's values as the TypeScript module names them: the C name without its prefix. */
export function fromBtf(btf: BtfEnum, prefix: string): Record<string, number> {
  return Object.fromEntries((btf.values ?? []).map((value) => {
    assert.ok(value.name.startsWith(prefix), `${btf.name}: ${value.name} lacks the prefix ${prefix}`);
    return [value.name.slice(prefix.length), value.val];
  }));
}

Deno.test("ffi/constants.ts holds every enum of bpf/aegis.h with the values of the built object's BTF", async () => {
  const enums = await objectEnums();
  assert.deepEqual(
    enums.map((btf) => btf.name).sort(),
    Object.keys(KERNEL_ENUMS).sort(),
    "the enums of aegis.h and of constants.ts",
  );
  for (const btf of enums) {
    const mirror = KERNEL_ENUMS[btf.name as keyof typeof KERNEL_ENUMS];
    assert.deepEqual({ ...mirror.values }, fromBtf(btf, mirror.prefix), `enum ${btf.name}`);
  }
});

Deno.test("fromBtf() tells a changed value or a new name apart, so the constants test fails on either side", () => {
  const btf = { kind: "ENUM", name: "aegis_mode", values: [{ name: "AEGIS_MODE_AUDIT", val: 0 }] };
  assert.notDeepEqual(fromBtf(btf, "AEGIS_MODE_"), { AUDIT: 1 });
  assert.notDeepEqual(fromBtf(btf, "AEGIS_MODE_"), { AUDIT: 0, ENFORCE: 1 });
  assert.throws(() => fromBtf(btf, "AEGIS_HOOK_"), /lacks the prefix/);
});
