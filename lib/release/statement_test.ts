import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import { pae, serializeEnvelope } from "../policy/dsse.ts";
import { generateKeyPair, readSigningKey, signBytes, type TrustedKey } from "../policy/keys.ts";
import {
  INTOTO_PAYLOAD_TYPE,
  judgeArtifacts,
  RELEASE_PREDICATE_TYPE,
  type ReleaseStatement,
  SignatureError,
  signRelease,
  STATEMENT_TYPE,
  verifyReleaseEnvelope,
} from "./statement.ts";

const signer = generateKeyPair();
const other = generateKeyPair();
const trusted = (pem: string): TrustedKey => {
  const { keyid, publicKey } = readSigningKey(pem, "k");
  return { keyid, publicKey, file: "k.pub" };
};
const release: ReleaseStatement = {
  product: "aegisbpf",
  version: "0.1.0",
  subjects: [
    { name: "aegisbpf_0.1.0_amd64.deb", digest: { sha256: "a".repeat(64) } },
    { name: "aegis.bpf.o", digest: { sha256: "b".repeat(64) } },
  ],
};

Deno.test("signRelease() writes an in-toto Statement v1 in a DSSE envelope that verifyReleaseEnvelope() reads back", () => {
  const text = signRelease(release, signer.privateKeyPem, "release.key");
  assert.ok(text.endsWith("\n") && !text.slice(0, -1).includes("\n"), "one JSON line");
  const envelope = JSON.parse(text);
  assert.equal(envelope.payloadType, INTOTO_PAYLOAD_TYPE);
  const statement = JSON.parse(new TextDecoder().decode(Uint8Array.fromBase64(envelope.payload)));
  assert.equal(statement._type, STATEMENT_TYPE);
  assert.equal(statement.predicateType, RELEASE_PREDICATE_TYPE);
  assert.deepEqual(statement.subject, release.subjects);
  const verified = verifyReleaseEnvelope(text, "r.intoto.jsonl", [trusted(signer.privateKeyPem)]);
  assert.deepEqual(verified, { ...release, keyid: signer.keyid });
});

Deno.test("verifyReleaseEnvelope() refuses another key's signature and an altered statement with SignatureError", () => {
  const text = signRelease(release, signer.privateKeyPem, "release.key");
  assert.throws(
    () => verifyReleaseEnvelope(text, "r", [trusted(other.privateKeyPem)]),
    (error: unknown) => error instanceof SignatureError && /is not trusted/.test(error.message),
  );
  const envelope = JSON.parse(text);
  const altered = { ...release, subjects: [{ name: "evil.deb", digest: { sha256: "c".repeat(64) } }] };
  envelope.payload = JSON.parse(signRelease(altered, other.privateKeyPem, "k")).payload;
  assert.throws(
    () => verifyReleaseEnvelope(JSON.stringify(envelope), "r", [trusted(signer.privateKeyPem)]),
    (error: unknown) => error instanceof SignatureError && /does not verify/.test(error.message),
  );
});

Deno.test("verifyReleaseEnvelope() refuses a truncated envelope, a policy bundle and a foreign statement as bad input", () => {
  const keys = [trusted(signer.privateKeyPem)];
  const text = signRelease(release, signer.privateKeyPem, "k");
  assert.throws(
    () => verifyReleaseEnvelope(text.slice(0, 100), "r", keys),
    /Invalid release envelope r: not valid JSON/,
  );
  const bundle = JSON.parse(text);
  bundle.payloadType = "application/vnd.aegisbpf.policy.v1+yaml";
  assert.throws(() => verifyReleaseEnvelope(JSON.stringify(bundle), "r", keys), /payloadType must be/);
  const key = readSigningKey(signer.privateKeyPem, "k");
  const signed = (statement: unknown) => {
    const payload = new TextEncoder().encode(JSON.stringify(statement));
    const sig = signBytes(pae(INTOTO_PAYLOAD_TYPE, payload), key);
    return serializeEnvelope({
      payloadType: INTOTO_PAYLOAD_TYPE,
      payload,
      signatures: [{ keyid: key.keyid, sig }],
    });
  };
  const base = JSON.parse(new TextDecoder().decode(Uint8Array.fromBase64(bundle.payload)));
  for (
    const [change, pattern] of [
      [{ _type: "https://in-toto.io/Statement/v0.1" }, /_type must be/],
      [{ predicateType: "https://slsa.dev/provenance/v1" }, /predicateType must be/],
      [{ subject: [] }, /no subjects/],
      [{ subject: [{ name: "x", digest: { sha256: "A".repeat(64) } }] }, /not 64 lowercase hex/],
      [{ subject: [{ name: "x", digest: { sha512: "a" } }] }, /needs a name and a sha256/],
      [{ subject: [...release.subjects, release.subjects[0]] }, /repeated/],
    ] as const
  ) {
    assert.throws(
      () => verifyReleaseEnvelope(signed({ ...base, ...change }), "r", keys),
      (error: unknown) => error instanceof InputError && pattern.test(error.message),
      JSON.stringify(change),
    );
  }
});

Deno.test("judgeArtifacts() accepts a matching file and refuses a changed one and one the statement does not name", () => {
  const verdicts = judgeArtifacts(release, [
    { file: "dist/aegis.bpf.o", name: "aegis.bpf.o", sha256: "b".repeat(64) },
    { file: "dist/aegisbpf_0.1.0_amd64.deb", name: "aegisbpf_0.1.0_amd64.deb", sha256: "d".repeat(64) },
    { file: "dist/other.deb", name: "other.deb", sha256: "a".repeat(64) },
  ]);
  assert.deepEqual(verdicts.map((v) => v.ok), [true, false, false]);
  assert.match(verdicts[1]!.reason, /differs from the statement's a{64}/);
  assert.match(verdicts[2]!.reason, /other\.deb is not a subject of the aegisbpf 0\.1\.0 statement/);
});

Deno.test("signRelease() refuses to sign no subjects or a malformed digest", () => {
  assert.throws(() => signRelease({ ...release, subjects: [] }, signer.privateKeyPem, "k"), /no subjects/);
  const bad = { ...release, subjects: [{ name: "a", digest: { sha256: "zz" } }] };
  assert.throws(() => signRelease(bad, signer.privateKeyPem, "k"), /not 64 lowercase hex/);
});
