import assert from "node:assert/strict";
import { join } from "node:path";
import { generateKeyPair, keyIdOf, readSigningKey, signBytes, verifyBytes } from "./keys.ts";
import { openssl, withTempDir } from "./keys_testing.ts";
import { decodePublicKeyPem } from "./pem.ts";

Deno.test("keyIdOf() is the hex SHA-256 of the raw public key, as openssl computes it", async () => {
  await withTempDir(async (dir) => {
    const pair = generateKeyPair();
    await Deno.writeTextFile(join(dir, "k.pub"), pair.publicKeyPem);
    await openssl(dir, "pkey", "-pubin", "-in", "k.pub", "-outform", "DER", "-out", "k.der");
    await Deno.writeFile(join(dir, "raw.bin"), (await Deno.readFile(join(dir, "k.der"))).subarray(-32));
    const digest = await openssl(dir, "dgst", "-sha256", "-r", "raw.bin");
    assert.equal(pair.keyid, digest.split(" ")[0]);
    assert.equal(keyIdOf(decodePublicKeyPem(pair.publicKeyPem, "k.pub")), pair.keyid);
  });
});

Deno.test("generateKeyPair() makes keys that sign and verify, and readSigningKey() finds the same keyid", () => {
  const pair = generateKeyPair();
  const key = readSigningKey(pair.privateKeyPem, "k.key");
  assert.equal(key.keyid, pair.keyid);
  const message = new TextEncoder().encode("policy");
  const signature = signBytes(message, key);
  assert.ok(verifyBytes(signature, message, key.publicKey));
  assert.ok(!verifyBytes(signature, new TextEncoder().encode("policY"), key.publicKey));
  assert.ok(!verifyBytes(signature, message, new Uint8Array(32).fill(0xff))); // not a curve point
});
