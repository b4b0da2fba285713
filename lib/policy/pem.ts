/**
 * Ed25519 keys as PEM, byte for byte as `openssl genpkey -algorithm ed25519` (PKCS#8) and
 * `openssl pkey -pubout` (SPKI) write them. The DER of an Ed25519 key has one form (RFC 8410), so it is
 * checked against a fixed prefix rather than parsed: anything else is not a key we accept.
 */

import { InputError } from "../errors.ts";

export const ED25519_KEY_BYTES = 32;

/** SEQUENCE { SEQUENCE { OID 1.3.101.112 } BIT STRING (0 unused bits) } */
const SPKI_PREFIX = Uint8Array.fromHex("302a300506032b6570032100");
/** SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING } } */
const PKCS8_PREFIX = Uint8Array.fromHex("302e020100300506032b657004220420");

const PUBLIC_LABEL = "PUBLIC KEY";
const PRIVATE_LABEL = "PRIVATE KEY";

/** Algorithm object identifiers (DER content bytes) worth naming when a key is the wrong kind. */
const OTHER_ALGORITHMS: ReadonlyArray<[string, Uint8Array]> = [
  ["an RSA key", Uint8Array.fromHex("2a864886f70d010101")],
  ["an RSA-PSS key", Uint8Array.fromHex("2a864886f70d01010a")],
  ["an EC key", Uint8Array.fromHex("2a8648ce3d0201")],
  ["an X25519 key", Uint8Array.fromHex("2b656e")],
  ["an X448 key", Uint8Array.fromHex("2b656f")],
  ["an Ed448 key", Uint8Array.fromHex("2b6571")],
  ["a DSA key", Uint8Array.fromHex("2a8648ce380401")],
];

export function encodePublicKeyPem(publicKey: Uint8Array): string {
  return armor(PUBLIC_LABEL, concat(SPKI_PREFIX, checkLength(publicKey, "public key")));
}

export function encodePrivateKeyPem(seed: Uint8Array): string {
  return armor(PRIVATE_LABEL, concat(PKCS8_PREFIX, checkLength(seed, "private key seed")));
}

/** The 32-byte raw public key of an SPKI PEM; an InputError naming `file` for anything else. */
export function decodePublicKeyPem(text: string, file: string): Uint8Array<ArrayBuffer> {
  const { label, der } = dearmor(text, file);
  if (label === PRIVATE_LABEL || label.endsWith(" PRIVATE KEY")) {
    throw notKey(
      file,
      "it is a private key, not a public one (export the public half with `openssl pkey -pubout`)",
    );
  }
  if (label !== PUBLIC_LABEL) throw notKey(file, `it holds a ${JSON.stringify(label)} PEM block`);
  return keyBytes(der, SPKI_PREFIX, file);
}

/** The 32-byte seed of an unencrypted PKCS#8 PEM; an InputError naming `file` for anything else. */
export function decodePrivateKeyPem(text: string, file: string): Uint8Array<ArrayBuffer> {
  const { label, der } = dearmor(text, file);
  if (label === PUBLIC_LABEL) throw notKey(file, "it is a public key, and signing needs the private key");
  if (label === "ENCRYPTED PRIVATE KEY") {
    throw notKey(file, "it is encrypted (decrypt it with `openssl pkey -in KEY -out PLAIN`)");
  }
  if (label !== PRIVATE_LABEL) throw notKey(file, `it holds a ${JSON.stringify(label)} PEM block`);
  return keyBytes(der, PKCS8_PREFIX, file);
}

function keyBytes(der: Uint8Array, prefix: Uint8Array, file: string): Uint8Array<ArrayBuffer> {
  const expected = prefix.length + ED25519_KEY_BYTES;
  if (der.length === expected && startsWith(der, prefix)) return der.slice(prefix.length);
  const other = OTHER_ALGORITHMS.find(([, oid]) => indexOf(der, oid) !== -1);
  if (other !== undefined) throw notKey(file, `it is ${other[0]}`);
  if (startsWith(der, prefix.subarray(0, prefix.length - 1))) {
    throw notKey(file, `its DER is ${der.length} bytes where an Ed25519 key has ${expected}`);
  }
  throw notKey(file, "its DER is not an Ed25519 key");
}

/** Exactly one PEM block and nothing but whitespace around it; lines may end in CRLF. */
function dearmor(text: string, file: string): { label: string; der: Uint8Array<ArrayBuffer> } {
  const lines = text.replaceAll("\r\n", "\n").trim().split("\n");
  const begin = /^-----BEGIN ([A-Z0-9 ]+)-----$/.exec(lines[0] ?? "");
  const label = begin?.[1];
  if (label === undefined || lines.length < 3 || lines.at(-1) !== `-----END ${label}-----`) {
    throw notKey(file, "it is not a PEM file (expected one -----BEGIN ...----- block and nothing else)");
  }
  const body = lines.slice(1, -1).join("");
  try {
    const der = Uint8Array.fromBase64(body, { lastChunkHandling: "strict" });
    if (der.toBase64() === body) return { label, der };
  } catch {
    // Reported below, with the same words as a non-canonical body.
  }
  throw notKey(file, "its PEM body is not valid base64");
}

function armor(label: string, der: Uint8Array): string {
  const body = der.toBase64().match(/.{1,64}/g) ?? [];
  return [`-----BEGIN ${label}-----`, ...body, `-----END ${label}-----`, ""].join("\n");
}

function notKey(file: string, why: string): InputError {
  return new InputError(`Not an Ed25519 key in ${file}: ${why}`, { position: { file } });
}

function checkLength(bytes: Uint8Array, what: string): Uint8Array {
  if (bytes.length !== ED25519_KEY_BYTES) {
    throw new RangeError(`An Ed25519 ${what} is ${ED25519_KEY_BYTES} bytes, not ${bytes.length}`);
  }
  return bytes;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  return bytes.length >= prefix.length && prefix.every((byte, i) => bytes[i] === byte);
}

function indexOf(bytes: Uint8Array, needle: Uint8Array): number {
  for (let i = 0; i + needle.length <= bytes.length; i++) {
    if (needle.every((byte, j) => bytes[i + j] === byte)) return i;
  }
  return -1;
}
