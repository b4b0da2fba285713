/**
 * The DSSE envelope of a signed bundle (SPEC section 4): the in-toto / Sigstore convention, read strictly.
 * https://github.com/secure-systems-lab/dsse/blob/master/envelope.md
 */

import { InputError } from "../errors.ts";

export const POLICY_PAYLOAD_TYPE = "application/vnd.aegisbpf.policy.v1+yaml";

/** Largest envelope accepted: room for a 100,000-rule fleet policy several times over, base64-encoded. */
export const MAX_ENVELOPE_BYTES = 32 * 1024 * 1024;

/** More signatures than this is not a bundle anyone made on purpose; each costs a verification. */
export const MAX_SIGNATURES = 16;

export const ED25519_SIGNATURE_BYTES = 64;

export type DsseSignature = { keyid: string; sig: Uint8Array<ArrayBuffer> };

export type DsseEnvelope = {
  payloadType: string;
  payload: Uint8Array<ArrayBuffer>;
  signatures: DsseSignature[];
};

const encoder = new TextEncoder();

/**
 * DSSE's pre-authentication encoding: `"DSSEv1" SP len(type) SP type SP len(payload) SP payload`, lengths
 * as decimal byte counts. What is signed, so that type and payload cannot be confused or shifted.
 */
export function pae(payloadType: string, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const type = encoder.encode(payloadType);
  const head = encoder.encode(`DSSEv1 ${type.length} `);
  const middle = encoder.encode(` ${payload.length} `);
  const out = new Uint8Array(head.length + type.length + middle.length + payload.length);
  out.set(head, 0);
  out.set(type, head.length);
  out.set(middle, head.length + type.length);
  out.set(payload, head.length + type.length + middle.length);
  return out;
}

/** The envelope as JSON text, keys in the conventional order, standard padded base64. */
export function serializeEnvelope(envelope: DsseEnvelope): string {
  return JSON.stringify({
    payloadType: envelope.payloadType,
    payload: envelope.payload.toBase64(),
    signatures: envelope.signatures.map(({ keyid, sig }) => ({ keyid, sig: sig.toBase64() })),
  }) + "\n";
}

/**
 * Reads an envelope strictly: exactly the DSSE keys, the expected payload type (a policy bundle's unless
 * told), canonical padded base64, keyids as 64 lowercase hex digits, 64-byte signatures, at least one and
 * at most MAX_SIGNATURES. Every problem is an InputError naming `file` and `what` the envelope is.
 */
export function parseEnvelope(
  text: string,
  file: string,
  payloadType = POLICY_PAYLOAD_TYPE,
  what = "bundle",
): DsseEnvelope {
  const bad = (detail: string, cause?: unknown) => invalid(what, file, detail, cause);
  // UTF-8 never takes fewer bytes than UTF-16 code units, so the first test spares encoding a huge text.
  if (text.length > MAX_ENVELOPE_BYTES || encoder.encode(text).length > MAX_ENVELOPE_BYTES) {
    throw bad(`larger than ${MAX_ENVELOPE_BYTES} bytes`);
  }
  // No string of an envelope needs an escape; without them a duplicate key shows as extra quotes.
  if (text.includes("\\")) throw bad(`backslash escapes are not used in a ${what}`);
  const root = parseJson(text, bad);
  const object = exactObject(root, ["payloadType", "payload", "signatures"], "the envelope", bad);
  if (object.payloadType !== payloadType) throw bad(`payloadType must be ${JSON.stringify(payloadType)}`);
  const payload = strictBase64(object.payload, "payload", bad);
  const signatures = parseSignatures(object.signatures, bad);
  if (countQuotes(text) !== 2 * (5 + 4 * signatures.length)) throw bad("duplicate key");
  return { payloadType, payload, signatures };
}

type Bad = (detail: string, cause?: unknown) => InputError;

/** Three keys and two values at the top, two keys and two values per signature: two quotes each. */
function countQuotes(text: string): number {
  let count = 0;
  for (let i = text.indexOf('"'); i !== -1; i = text.indexOf('"', i + 1)) count++;
  return count;
}

function parseSignatures(value: unknown, bad: Bad): DsseSignature[] {
  if (!Array.isArray(value) || value.length === 0) throw bad("signatures must be a non-empty array");
  if (value.length > MAX_SIGNATURES) throw bad(`more than ${MAX_SIGNATURES} signatures`);
  return value.map((item: unknown, i) => {
    const where = `signatures[${i}]`;
    const signature = exactObject(item, ["keyid", "sig"], where, bad);
    if (typeof signature.keyid !== "string" || !/^[0-9a-f]{64}$/.test(signature.keyid)) {
      throw bad(`${where}.keyid must be 64 lowercase hex digits (the SHA-256 of the public key)`);
    }
    const sig = strictBase64(signature.sig, `${where}.sig`, bad);
    if (sig.length !== ED25519_SIGNATURE_BYTES) {
      throw bad(`${where}.sig must be ${ED25519_SIGNATURE_BYTES} bytes, not ${sig.length}`);
    }
    return { keyid: signature.keyid, sig };
  });
}

function parseJson(text: string, bad: Bad): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw bad(`not valid JSON: ${(error as Error).message}`, error);
  }
}

function exactObject(
  value: unknown,
  keys: readonly string[],
  where: string,
  bad: Bad,
): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad(`${where} must be an object`);
  }
  const record = value as Record<string, unknown>;
  const present = Object.keys(record);
  const unknown = present.find((key) => !keys.includes(key));
  if (unknown !== undefined) throw bad(`unknown key ${JSON.stringify(unknown)} in ${where}`);
  const missing = keys.find((key) => !present.includes(key));
  if (missing !== undefined) throw bad(`missing key ${JSON.stringify(missing)} in ${where}`);
  return record;
}

/**
 * Standard padded base64 with nothing to spare: no whitespace, no URL alphabet, no stray padding bits.
 * Re-encoding must give back the same text, so one payload has exactly one encoding.
 */
function strictBase64(value: unknown, where: string, bad: Bad): Uint8Array<ArrayBuffer> {
  if (typeof value !== "string") throw bad(`${where} must be a base64 string`);
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = Uint8Array.fromBase64(value, { lastChunkHandling: "strict" });
  } catch (error) {
    throw bad(`${where} is not valid base64`, error);
  }
  if (bytes.toBase64() !== value) throw bad(`${where} is not canonical padded base64`);
  return bytes;
}

function invalid(what: string, file: string, detail: string, cause?: unknown): InputError {
  return new InputError(`Invalid ${what} ${file}: ${detail}`, { position: { file }, cause });
}
