import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import {
  MAX_ENVELOPE_BYTES,
  MAX_SIGNATURES,
  pae,
  parseEnvelope,
  POLICY_PAYLOAD_TYPE,
  serializeEnvelope,
} from "./dsse.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (value: string) => new TextEncoder().encode(value);

Deno.test("pae() matches the DSSE specification's test vector", () => {
  assert.equal(
    text(pae("http://example.com/HelloWorld", bytes("hello world"))),
    "DSSEv1 29 http://example.com/HelloWorld 11 hello world",
  );
});

Deno.test("pae() counts bytes, not characters, and keeps empty fields delimited", () => {
  assert.equal(text(pae("", new Uint8Array())), "DSSEv1 0  0 ");
  assert.equal(text(pae("é", bytes("ü"))), "DSSEv1 2 é 2 ü");
  const binary = new Uint8Array([0, 255, 32]);
  assert.deepEqual([...pae("t", binary).subarray(-3)], [0, 255, 32]);
});

Deno.test("pae() of a type ending in digits cannot be confused with a shifted split", () => {
  assert.notDeepEqual(pae("a 1", bytes("b")), pae("a", bytes("1 b")));
});

const sig = new Uint8Array(64).fill(7);
const keyid = "ab".repeat(32);
const good = () => ({
  payloadType: POLICY_PAYLOAD_TYPE,
  payload: bytes("apiVersion: aegisbpf.io/v1\n").toBase64(),
  signatures: [{ keyid, sig: sig.toBase64() }],
});

function rejects(value: unknown, pattern: RegExp) {
  const source = typeof value === "string" ? value : JSON.stringify(value);
  assert.throws(() => parseEnvelope(source, "b.json"), (error: unknown) => {
    assert.ok(error instanceof InputError, `expected InputError, got ${error}`);
    assert.match(error.message, /^Invalid bundle b\.json: /);
    assert.match(error.message, pattern);
    assert.equal(error.position?.file, "b.json");
    return true;
  });
}

Deno.test("parseEnvelope() reads a well-formed envelope and serializeEnvelope() writes it back", () => {
  const envelope = parseEnvelope(JSON.stringify(good()), "b.json");
  assert.equal(text(envelope.payload), "apiVersion: aegisbpf.io/v1\n");
  assert.deepEqual(envelope.signatures, [{ keyid, sig }]);
  assert.deepEqual(JSON.parse(serializeEnvelope(envelope)), good());
  assert.deepEqual(parseEnvelope(serializeEnvelope(envelope), "b.json"), envelope);
});

Deno.test("parseEnvelope() accepts whitespace between JSON tokens", () => {
  assert.equal(parseEnvelope(JSON.stringify(good(), null, 2), "b.json").signatures.length, 1);
});

Deno.test("parseEnvelope() refuses text that is not a JSON object", () => {
  rejects("", /not valid JSON/);
  rejects("{", /not valid JSON/);
  rejects("[]", /the envelope must be an object/);
  rejects("null", /the envelope must be an object/);
  rejects("apiVersion: aegisbpf.io/v1", /not valid JSON/);
});

Deno.test("parseEnvelope() refuses unknown, missing and duplicate keys", () => {
  rejects({ ...good(), extra: 1 }, /unknown key "extra" in the envelope/);
  const { payload: _, ...noPayload } = good();
  rejects(noPayload, /missing key "payload"/);
  rejects(
    { ...good(), signatures: [{ keyid, sig: sig.toBase64(), cert: "x" }] },
    /unknown key "cert" in signatures\[0\]/,
  );
  const duplicated = JSON.stringify(good()).replace("{", `{"payload":"aGk=",`);
  rejects(duplicated, /duplicate key/);
  const duplicatedInSignature = JSON.stringify(good()).replace(
    `{"keyid"`,
    `{"keyid":"${"cd".repeat(32)}","keyid"`,
  );
  rejects(duplicatedInSignature, /duplicate key/);
});

Deno.test("parseEnvelope() refuses escaped strings, which could hide a duplicate key", () => {
  rejects(JSON.stringify(good()).replace(`"payload"`, `"payl\\u006fad"`), /backslash escapes/);
});

Deno.test("parseEnvelope() refuses any other payload type", () => {
  rejects({ ...good(), payloadType: "application/vnd.in-toto+json" }, /payloadType must be/);
  rejects({ ...good(), payloadType: 1 }, /payloadType must be/);
});

Deno.test("parseEnvelope() refuses non-canonical base64", () => {
  rejects({ ...good(), payload: "aGk" }, /payload is not valid base64/); // no padding
  rejects({ ...good(), payload: "aGl=" }, /payload is not valid base64/); // stray padding bits
  rejects({ ...good(), payload: "aG k=" }, /payload is not canonical/); // whitespace inside
  rejects({ ...good(), payload: "-_-_" }, /payload is not valid base64/); // URL alphabet
  rejects({ ...good(), payload: 42 }, /payload must be a base64 string/);
  rejects({ ...good(), signatures: [{ keyid, sig: sig.toBase64().slice(0, -2) }] }, /signatures\[0\]\.sig/);
});

Deno.test("parseEnvelope() refuses keyids that are not 64 lowercase hex digits", () => {
  for (const bad of ["AB".repeat(32), "ab".repeat(31), "ab".repeat(33), "", "zz".repeat(32)]) {
    rejects(
      { ...good(), signatures: [{ keyid: bad, sig: sig.toBase64() }] },
      /signatures\[0\]\.keyid must be/,
    );
  }
});

Deno.test("parseEnvelope() refuses signatures that are not 64 bytes", () => {
  rejects(
    { ...good(), signatures: [{ keyid, sig: new Uint8Array(63).toBase64() }] },
    /must be 64 bytes, not 63/,
  );
  rejects({ ...good(), signatures: [{ keyid, sig: "" }] }, /must be 64 bytes, not 0/);
});

Deno.test("parseEnvelope() refuses no signatures and too many", () => {
  rejects({ ...good(), signatures: [] }, /non-empty array/);
  rejects({ ...good(), signatures: {} }, /non-empty array/);
  const many = Array.from({ length: MAX_SIGNATURES + 1 }, () => ({ keyid, sig: sig.toBase64() }));
  rejects({ ...good(), signatures: many }, /more than 16 signatures/);
});

Deno.test("parseEnvelope() refuses an envelope over the size limit before parsing it", () => {
  rejects(" ".repeat(MAX_ENVELOPE_BYTES + 1), /larger than/);
});
