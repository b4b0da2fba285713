/**
 * Ed25519 keys (SPEC section 4): generation, signing and verification through @noble/ed25519, and key ids.
 * The trusted-key store on disk is lib/state/key_store.ts.
 */

import * as ed from "@noble/ed25519";
import { createHash } from "node:crypto";
import { decodePrivateKeyPem, encodePrivateKeyPem, encodePublicKeyPem } from "./pem.ts";

// noble's synchronous API needs a SHA-512; the runtime's is the one to trust.
ed.hashes.sha512 = (message) => new Uint8Array(createHash("sha512").update(message).digest());

/** Shortest keyid prefix `removeTrustedKey` accepts: long enough that a typo cannot name another key. */
export const MIN_KEYID_PREFIX = 8;

export type KeyPair = { keyid: string; privateKeyPem: string; publicKeyPem: string };

/** A key from the trusted store, and the file it came from. */
export type TrustedKey = { keyid: string; publicKey: Uint8Array<ArrayBuffer>; file: string };

/** The hex SHA-256 of the 32-byte raw public key. */
export function keyIdOf(publicKey: Uint8Array): string {
  return createHash("sha256").update(publicKey).digest("hex");
}

export function generateKeyPair(): KeyPair {
  const { secretKey, publicKey } = ed.keygen();
  return {
    keyid: keyIdOf(publicKey),
    privateKeyPem: encodePrivateKeyPem(secretKey),
    publicKeyPem: encodePublicKeyPem(publicKey),
  };
}

/** A private key PEM ready to sign: its seed, public key and keyid. */
export type SigningKey = { keyid: string; seed: Uint8Array<ArrayBuffer>; publicKey: Uint8Array<ArrayBuffer> };

export function readSigningKey(privateKeyPem: string, file: string): SigningKey {
  const seed = decodePrivateKeyPem(privateKeyPem, file);
  const publicKey = new Uint8Array(ed.getPublicKey(seed));
  return { keyid: keyIdOf(publicKey), seed, publicKey };
}

export function signBytes(message: Uint8Array, key: SigningKey): Uint8Array<ArrayBuffer> {
  return new Uint8Array(ed.sign(message, key.seed));
}

/** RFC 8032 verification (not ZIP-215): one valid signature per message and key, as openssl checks it. */
export function verifyBytes(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    return ed.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false; // a public key that is not a curve point verifies nothing
  }
}
