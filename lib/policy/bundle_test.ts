import assert from "node:assert/strict";
import { join } from "node:path";
import { InputError, RefusedError } from "../errors.ts";
import { isBundle, type PolicyHeader, signPolicy, verifyBundle, type VerifyBundleOptions } from "./bundle.ts";
import { pae, POLICY_PAYLOAD_TYPE, serializeEnvelope } from "./dsse.ts";
import {
  generateKeyPair,
  keyIdOf,
  type KeyPair,
  readSigningKey,
  signBytes,
  type TrustedKey,
} from "./keys.ts";
import { openssl, opensslSucceeds } from "./keys_testing.ts";
import { decodePublicKeyPem } from "./pem.ts";

/** Stands in for lib/policy/parse.ts: enough of a policy to carry a version and an expiry. */
function parsePolicy(text: string, file: string): PolicyHeader & { name: string } {
  const version = /^\s+version: (\d+)$/m.exec(text)?.[1];
  if (!text.startsWith("apiVersion: aegisbpf.io/v1\n") || version === undefined) {
    throw new InputError(`Invalid policy ${file}: not a policy`, { position: { file, line: 1, column: 1 } });
  }
  const notAfter = /^\s+notAfter: (\S+)$/m.exec(text)?.[1];
  return { name: "test", metadata: { version: Number(version), ...(notAfter ? { notAfter } : {}) } };
}

function policy(version: number, notAfter?: string): string {
  return [
    "apiVersion: aegisbpf.io/v1",
    "kind: Policy",
    "metadata:",
    "  name: web-baseline",
    `  version: ${version}`,
    ...(notAfter ? [`  notAfter: ${notAfter}`] : []),
    "spec:",
    "  mode: enforce",
    "",
  ].join("\n");
}

function trusted(...pairs: KeyPair[]): TrustedKey[] {
  return pairs.map((pair) => ({
    keyid: pair.keyid,
    publicKey: decodePublicKeyPem(pair.publicKeyPem, "k.pub"),
    file: `${pair.keyid}.pub`,
  }));
}

const signer = generateKeyPair();
const now = new Date("2026-06-01T00:00:00Z");

function options(overrides: Partial<VerifyBundleOptions<ReturnType<typeof parsePolicy>>> = {}) {
  return { file: "b.json", trustedKeys: trusted(signer), versionCounter: 0, now, parsePolicy, ...overrides };
}

function rejectsWith(errorClass: typeof InputError | typeof RefusedError, pattern: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof errorClass, `expected ${errorClass.name}, got ${error}`);
    assert.match(error.message, pattern);
    return true;
  };
}

/** A bundle over arbitrary payload bytes and type, for cases signPolicy() cannot make. */
function rawBundle(payload: Uint8Array, pair: KeyPair, signedType = POLICY_PAYLOAD_TYPE): string {
  const key = readSigningKey(pair.privateKeyPem, "k.key");
  const sig = signBytes(pae(signedType, payload), key);
  return serializeEnvelope({
    payloadType: POLICY_PAYLOAD_TYPE,
    payload: new Uint8Array(payload),
    signatures: [{ keyid: key.keyid, sig }],
  });
}

Deno.test("signPolicy() and verifyBundle() round-trip the exact policy text", () => {
  const text = policy(7);
  const verified = verifyBundle(signPolicy(text, signer.privateKeyPem), options({ versionCounter: 6 }));
  assert.equal(verified.policyText, text);
  assert.equal(verified.keyid, signer.keyid);
  assert.equal(verified.version, 7);
  assert.equal(verified.policy.name, "test");
});

Deno.test("a bundle signed with a key made by openssl genpkey verifies", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-bundle-" });
  try {
    await openssl(dir, "genpkey", "-algorithm", "ed25519", "-out", "ed.key");
    const publicKeyPem = await openssl(dir, "pkey", "-in", "ed.key", "-pubout");
    const privateKeyPem = await Deno.readTextFile(join(dir, "ed.key"));
    const pair = { keyid: keyIdOf(decodePublicKeyPem(publicKeyPem, "ed.pub")), privateKeyPem, publicKeyPem };
    const bundle = signPolicy(policy(1), privateKeyPem, "ed.key");
    assert.equal(verifyBundle(bundle, options({ trustedKeys: trusted(pair) })).keyid, pair.keyid);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openssl pkeyutl verifies an aegisbpf signature over the PAE, and rejects a changed one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-bundle-" });
  try {
    const text = policy(3);
    const envelope = JSON.parse(signPolicy(text, signer.privateKeyPem));
    await Deno.writeTextFile(join(dir, "pub.pem"), signer.publicKeyPem);
    await Deno.writeFile(join(dir, "pae.bin"), pae(POLICY_PAYLOAD_TYPE, new TextEncoder().encode(text)));
    await Deno.writeFile(join(dir, "sig.bin"), Uint8Array.fromBase64(envelope.signatures[0].sig));
    const verify = [
      "pkeyutl",
      "-verify",
      "-pubin",
      "-inkey",
      "pub.pem",
      "-rawin",
      "-in",
      "pae.bin",
      "-sigfile",
      "sig.bin",
    ];
    assert.match(await openssl(dir, ...verify), /Signature Verified Successfully/);
    await Deno.writeFile(join(dir, "pae.bin"), pae(POLICY_PAYLOAD_TYPE, new TextEncoder().encode(policy(4))));
    assert.equal(await opensslSucceeds(dir, ...verify), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("verifyBundle() accepts a signature openssl made over the PAE", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-bundle-" });
  try {
    const payload = new TextEncoder().encode(policy(2));
    await Deno.writeTextFile(join(dir, "k.key"), signer.privateKeyPem);
    await Deno.writeFile(join(dir, "pae.bin"), pae(POLICY_PAYLOAD_TYPE, payload));
    await openssl(dir, "pkeyutl", "-sign", "-inkey", "k.key", "-rawin", "-in", "pae.bin", "-out", "sig.bin");
    const sig = await Deno.readFile(join(dir, "sig.bin"));
    const bundle = serializeEnvelope({
      payloadType: POLICY_PAYLOAD_TYPE,
      payload,
      signatures: [{ keyid: signer.keyid, sig }],
    });
    assert.equal(verifyBundle(bundle, options()).version, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("verifyBundle() refuses a bundle signed by a key that is not trusted, naming the keyid", () => {
  const stranger = generateKeyPair();
  assert.throws(
    () => verifyBundle(signPolicy(policy(1), stranger.privateKeyPem), options()),
    rejectsWith(
      InputError,
      new RegExp(`^Bad signature in bundle b\\.json: key ${stranger.keyid} is not trusted$`),
    ),
  );
  assert.throws(
    () => verifyBundle(signPolicy(policy(1), signer.privateKeyPem), options({ trustedKeys: [] })),
    rejectsWith(InputError, /is not trusted/),
  );
});

Deno.test("verifyBundle() refuses a signature that does not verify under the trusted key it names", () => {
  const envelope = JSON.parse(signPolicy(policy(1), signer.privateKeyPem));
  envelope.signatures[0].sig = signBytes(new Uint8Array([1]), readSigningKey(signer.privateKeyPem, "k"))
    .toBase64();
  assert.throws(
    () => verifyBundle(JSON.stringify(envelope), options()),
    rejectsWith(InputError, new RegExp(`the signature of trusted key ${signer.keyid} does not verify`)),
  );
});

Deno.test("verifyBundle() accepts a bundle when one of several signatures is by a trusted key", () => {
  const other = generateKeyPair();
  const first = JSON.parse(signPolicy(policy(1), other.privateKeyPem));
  const second = JSON.parse(signPolicy(policy(1), signer.privateKeyPem));
  first.signatures.push(...second.signatures);
  assert.equal(verifyBundle(JSON.stringify(first), options()).keyid, signer.keyid);
});

Deno.test("verifyBundle() checks the signature before it parses the policy", () => {
  const unsigned = rawBundle(new TextEncoder().encode("not a policy"), generateKeyPair());
  assert.throws(() => verifyBundle(unsigned, options()), rejectsWith(InputError, /^Bad signature/));
  const signed = rawBundle(new TextEncoder().encode("not a policy"), signer);
  assert.throws(
    () => verifyBundle(signed, options()),
    rejectsWith(InputError, /^Invalid policy b\.json \(payload\): not a policy/),
  );
});

Deno.test("verifyBundle() refuses a signed payload that is not UTF-8", () => {
  assert.throws(
    () => verifyBundle(rawBundle(new Uint8Array([0xff, 0xfe, 0x41]), signer), options()),
    rejectsWith(InputError, /not UTF-8/),
  );
});

Deno.test("verifyBundle() refuses a signature over another payload type", () => {
  const bundle = rawBundle(new TextEncoder().encode(policy(1)), signer, "application/vnd.in-toto+json");
  assert.throws(() => verifyBundle(bundle, options()), rejectsWith(InputError, /^Bad signature/));
});

Deno.test("verifyBundle() refuses a replayed older version with RefusedError, saying both numbers", () => {
  const bundle = signPolicy(policy(5), signer.privateKeyPem);
  assert.throws(
    () => verifyBundle(bundle, options({ versionCounter: 7 })),
    rejectsWith(RefusedError, /policy version 5 is not greater than the anti-rollback counter 7/),
  );
  assert.throws(
    () => verifyBundle(bundle, options({ versionCounter: 5 })),
    rejectsWith(RefusedError, /version 5 .* counter 5/),
  );
  assert.equal(verifyBundle(bundle, options({ versionCounter: 4 })).version, 5);
});

Deno.test("verifyBundle() lets an explicit rollback go below the counter, still checking the signature", () => {
  const bundle = signPolicy(policy(5), signer.privateKeyPem);
  assert.equal(verifyBundle(bundle, options({ versionCounter: 7, rollback: true })).version, 5);
  assert.throws(
    () => verifyBundle(bundle, options({ versionCounter: 7, rollback: true, trustedKeys: [] })),
    rejectsWith(InputError, /^Bad signature/),
  );
});

Deno.test("verifyBundle() refuses an expired bundle with RefusedError and accepts one up to notAfter", () => {
  const bundle = signPolicy(policy(1, "2026-05-31T23:59:59Z"), signer.privateKeyPem);
  assert.throws(
    () => verifyBundle(bundle, options()),
    rejectsWith(RefusedError, /expired at 2026-05-31T23:59:59\.000Z \(notAfter\)/),
  );
  assert.throws(
    () => verifyBundle(bundle, options({ rollback: true })),
    rejectsWith(RefusedError, /expired/),
  );
  assert.equal(verifyBundle(bundle, options({ now: new Date("2026-05-31T23:59:59Z") })).version, 1);
  const offset = signPolicy(policy(1, "2026-06-01T02:00:00+02:00"), signer.privateKeyPem);
  assert.equal(verifyBundle(offset, options()).version, 1);
});

Deno.test("verifyBundle() refuses a notAfter that is not an RFC 3339 time", () => {
  const bundle = signPolicy(policy(1, "next-year"), signer.privateKeyPem);
  assert.throws(
    () => verifyBundle(bundle, options()),
    rejectsWith(InputError, /notAfter "next-year" is not an RFC 3339 time/),
  );
});

Deno.test("verifyBundle() accepts a notAfter the parser already turned into a Date", () => {
  const bundle = signPolicy(policy(1), signer.privateKeyPem);
  const parseWithDate = (text: string, file: string) => ({
    metadata: { ...parsePolicy(text, file).metadata, notAfter: new Date("2020-01-01T00:00:00Z") },
  });
  assert.throws(() => verifyBundle(bundle, { ...options(), parsePolicy: parseWithDate }), RefusedError);
});

/** A small seeded generator, so that a failing case can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function alwaysRejected(bundle: string, what: string) {
  assert.throws(() => verifyBundle(bundle, options()), (error: unknown) => {
    assert.ok(error instanceof InputError, `${what}: expected InputError, got ${error}`);
    return true;
  }, what);
}

Deno.test("property: any single byte flip in a bundle is rejected", () => {
  const bundle = signPolicy(policy(9), signer.privateKeyPem).trimEnd();
  const next = random(0xae615);
  const bytes = new TextEncoder().encode(bundle);
  for (let i = 0; i < 2000; i++) {
    const at = Math.floor(next() * bytes.length);
    const flipped = bytes.slice();
    flipped[at] = flipped[at]! ^ (1 << Math.floor(next() * 8));
    alwaysRejected(new TextDecoder().decode(flipped), `flip at ${at}`);
  }
});

Deno.test("property: every truncation of a bundle is rejected", () => {
  const bundle = signPolicy(policy(9), signer.privateKeyPem).trimEnd();
  for (let length = 0; length < bundle.length; length++) {
    alwaysRejected(bundle.slice(0, length), `truncated to ${length}`);
  }
});

Deno.test("property: a signature moved to another payload, or fields swapped between bundles, is rejected", () => {
  const a = JSON.parse(signPolicy(policy(9), signer.privateKeyPem));
  const b = JSON.parse(signPolicy(policy(10), signer.privateKeyPem));
  alwaysRejected(JSON.stringify({ ...a, signatures: b.signatures }), "signature of b on payload of a");
  alwaysRejected(
    JSON.stringify({ ...b, payload: a.payload.slice(0, -4) + b.payload.slice(-4) }),
    "mixed payload",
  );
  const keyidSwap = { ...a, signatures: [{ keyid: generateKeyPair().keyid, sig: a.signatures[0].sig }] };
  alwaysRejected(JSON.stringify(keyidSwap), "signature under another keyid");
  alwaysRejected(
    JSON.stringify({ payload: a.payloadType, payloadType: a.payload, signatures: a.signatures }),
    "type and payload swapped",
  );
  const fieldsSwapped = { ...a, signatures: [{ keyid: a.signatures[0].sig, sig: a.signatures[0].keyid }] };
  alwaysRejected(JSON.stringify(fieldsSwapped), "keyid and sig swapped");
});

Deno.test("property: the same payload re-encoded in another base64 form is rejected", () => {
  const envelope = JSON.parse(signPolicy(policy(9), signer.privateKeyPem));
  const payload = Uint8Array.fromBase64(envelope.payload);
  const sig = Uint8Array.fromBase64(envelope.signatures[0].sig);
  const forms = [
    payload.toBase64({ alphabet: "base64url" }),
    payload.toBase64({ omitPadding: true }),
    (payload.toBase64().match(/.{1,76}/g) ?? []).join("\n"),
  ].filter((form) => form !== envelope.payload);
  assert.ok(forms.length >= 2);
  for (const form of forms) {
    alwaysRejected(JSON.stringify({ ...envelope, payload: form }), `payload as ${form.slice(0, 12)}`);
  }
  const urlSig = sig.toBase64({ alphabet: "base64url", omitPadding: true });
  alwaysRejected(
    JSON.stringify({ ...envelope, signatures: [{ ...envelope.signatures[0], sig: urlSig }] }),
    "sig re-encoded",
  );
});

Deno.test("property: a payload changed in any one byte under its original signature is rejected", () => {
  const next = random(42);
  const original = new TextEncoder().encode(policy(9));
  const envelope = JSON.parse(signPolicy(policy(9), signer.privateKeyPem));
  for (let i = 0; i < 50; i++) {
    const changed = original.slice();
    const at = Math.floor(next() * changed.length);
    changed[at] = changed[at]! ^ 1;
    alwaysRejected(JSON.stringify({ ...envelope, payload: changed.toBase64() }), `payload byte ${at}`);
  }
});

Deno.test("isBundle() tells a bundle, even a broken one, from a YAML or JSON policy", () => {
  const bundle = signPolicy(policy(1), signer.privateKeyPem);
  assert.ok(isBundle(bundle));
  assert.ok(isBundle("\uFEFF  " + bundle));
  assert.ok(isBundle(bundle.slice(0, 80)));
  assert.ok(isBundle('{"signatures": []}'));
  assert.ok(!isBundle(policy(1)));
  assert.ok(!isBundle(JSON.stringify({ apiVersion: "aegisbpf.io/v1", kind: "Policy" })));
  assert.ok(!isBundle('{"apiVersion": "aegisbpf.io/v1", '));
  assert.ok(!isBundle(""));
  assert.ok(!isBundle("[]"));
});

Deno.test("isBundle() reads a DSSE key however it is written, and only at the top level", () => {
  assert.ok(isBundle('{"\\u0070ayloadType": "x"}'));
  assert.ok(isBundle('{ "payload" : "x"}'));
  assert.ok(!isBundle(JSON.stringify({ apiVersion: "aegisbpf.io/v1", spec: { payload: 1, signatures: 2 } })));
  assert.ok(!isBundle(JSON.stringify({ apiVersion: "aegisbpf.io/v1", metadata: { name: "p\u0061yload" } })));
});
