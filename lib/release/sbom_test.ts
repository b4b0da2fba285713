import assert from "node:assert/strict";
import { Spec, Validation } from "@cyclonedx/cyclonedx-library";
import { npmPackagesOfLock, type SbomInput, sbomJson } from "./sbom.ts";

const integrity = (byte: number) => `sha512-${new Uint8Array(64).fill(byte).toBase64()}`;

const input: SbomInput = {
  artifact: { name: "aegisbpf_0.1.0_amd64.deb", version: "0.1.0", kind: "deb" },
  npm: [
    { name: "yaml", version: "2.9.1", integrity: integrity(1) },
    { name: "@noble/ed25519", version: "3.2.0", integrity: integrity(2) },
  ],
  debian: [{ name: "libbpf1", version: "1:1.1.0-1", architecture: "amd64" }],
  distro: "debian-12",
  deno: { version: "2.9.6", shipped: false },
  bpfObject: { name: "aegis.bpf.o", sha256: "ab".repeat(32) },
  serialNumber: "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
  timestamp: new Date("2026-01-02T03:04:05Z"),
};

Deno.test("npmPackagesOfLock() lists each name@version once, peer suffixes dropped, sorted", () => {
  const lock = {
    npm: {
      "yaml@2.9.1": { integrity: integrity(1) },
      "@scope/lib@1.0.0_peer@2.0.0": { integrity: integrity(2) },
      "@scope/lib@1.0.0_peer@3.0.0": { integrity: integrity(2) },
      "under_score@0.1.0": { integrity: integrity(3) },
    },
  };
  assert.deepEqual(npmPackagesOfLock(lock), [
    { name: "@scope/lib", version: "1.0.0", integrity: integrity(2) },
    { name: "under_score", version: "0.1.0", integrity: integrity(3) },
    { name: "yaml", version: "2.9.1", integrity: integrity(1) },
  ]);
  assert.throws(() => npmPackagesOfLock({ npm: { "noversion": { integrity: integrity(1) } } }), /noversion/);
  assert.throws(() => npmPackagesOfLock({ npm: { "a@1.0.0": {} } }), /a@1\.0\.0/);
});

Deno.test("sbomJson() writes valid CycloneDX 1.6 with purls, the lock's hashes, dpkg versions, Deno and the BPF object", async () => {
  const text = sbomJson(input);
  assert.equal(await new Validation.JsonStrictValidator(Spec.Version.v1dot6).validate(text), null);
  const bom = JSON.parse(text);
  assert.equal(bom.serialNumber, input.serialNumber);
  assert.deepEqual(bom.metadata.component, {
    type: "application",
    name: "aegisbpf_0.1.0_amd64.deb",
    version: "0.1.0",
    "bom-ref": "aegisbpf",
  });
  const byName = new Map(bom.components.map((c: { name: string }) => [c.name, c]));
  assert.deepEqual(byName.get("ed25519"), {
    type: "library",
    name: "ed25519",
    group: "@noble",
    version: "3.2.0",
    "bom-ref": "pkg:npm/%40noble/ed25519@3.2.0",
    scope: "required",
    hashes: [{ alg: "SHA-512", content: "02".repeat(64) }],
    purl: "pkg:npm/%40noble/ed25519@3.2.0",
  });
  assert.match(
    (byName.get("libbpf1") as { purl: string }).purl,
    /^pkg:deb\/debian\/libbpf1@.*arch=amd64&distro=debian-12$/,
  );
  assert.deepEqual((byName.get("aegis.bpf.o") as { hashes: unknown }).hashes, [
    { alg: "SHA-256", content: "ab".repeat(32) },
  ]);
  assert.match((byName.get("deno") as { description: string }).description, /not shipped/);
});

Deno.test("sbomJson() of an image names it a container and Deno as shipped, with its sha256", () => {
  const bom = JSON.parse(sbomJson({
    ...input,
    artifact: { ...input.artifact, kind: "image" },
    deno: { version: "2.9.6", shipped: true, sha256: "cd".repeat(32) },
  }));
  assert.equal(bom.metadata.component.type, "container");
  const deno = bom.components.find((c: { name: string }) => c.name === "deno");
  assert.deepEqual(deno.hashes, [{ alg: "SHA-256", content: "cd".repeat(32) }]);
});

Deno.test("sbomJson() refuses an integrity that is not an SRI hash", () => {
  assert.throws(
    () => sbomJson({ ...input, npm: [{ name: "x", version: "1.0.0", integrity: "md5:abc" }] }),
    /not an SRI hash/,
  );
});
