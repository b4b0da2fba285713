/**
 * Signed policy bundles (SPEC section 4): a DSSE envelope around the policy text, signed with Ed25519 over
 * DSSE's PAE, accepted only under a trusted key, above the anti-rollback counter and before `notAfter`.
 */

import { InputError, RefusedError } from "../errors.ts";
import { type DsseEnvelope, pae, parseEnvelope, POLICY_PAYLOAD_TYPE, serializeEnvelope } from "./dsse.ts";
import { readSigningKey, signBytes, type TrustedKey, verifyBytes } from "./keys.ts";

/** What the bundle rules need from a parsed policy; the policy parser returns more. */
export type PolicyHeader = { metadata: { version: number; notAfter?: string | Date | undefined } };

/** The policy parser, injected: it throws an InputError with positions in `file` for an invalid policy. */
export type ParsePolicy<P extends PolicyHeader> = (text: string, file: string) => P;

export type VerifyBundleOptions<P extends PolicyHeader> = {
  /** How the bundle is named in messages: its path or URL. */
  file: string;
  trustedKeys: readonly TrustedKey[];
  /**
   * A version equal to the counter passes here: the caller decides under the state lock whether it is the
   * bundle in force (unchanged) or the one that raised the counter (allowed back after a detach).
   */
  counterEqualDecidedLater?: boolean;
  /** The anti-rollback counter: the policy's version must be greater. */
  versionCounter: number;
  now: Date;
  parsePolicy: ParsePolicy<P>;
  /**
   * `policy rollback` is an explicit operator action and may go below the counter (SPEC section 4); the
   * signature and `notAfter` are still checked.
   */
  rollback?: boolean;
};

export type VerifiedBundle<P extends PolicyHeader> = {
  policyText: string;
  policy: P;
  /** The trusted key whose signature verified. */
  keyid: string;
  version: number;
};

/** Signs `policyText` with a PKCS#8 Ed25519 key; the bundle as JSON text. */
export function signPolicy(
  policyText: string,
  privateKeyPem: string,
  keyFile = "the private key PEM",
): string {
  const key = readSigningKey(privateKeyPem, keyFile);
  const payload = new TextEncoder().encode(policyText);
  const sig = signBytes(pae(POLICY_PAYLOAD_TYPE, payload), key);
  return serializeEnvelope({
    payloadType: POLICY_PAYLOAD_TYPE,
    payload,
    signatures: [{ keyid: key.keyid, sig }],
  });
}

/**
 * Checks a bundle in the order of SPEC section 4, each failure with its exit code: a well-formed envelope
 * (InputError), a signature that verifies under a trusted key (InputError), a valid policy (the parser's
 * InputError), a version above the counter (RefusedError), `notAfter` not passed (RefusedError).
 */
export function verifyBundle<P extends PolicyHeader>(
  text: string,
  options: VerifyBundleOptions<P>,
): VerifiedBundle<P> {
  const { file } = options;
  const envelope = parseEnvelope(text, file);
  const keyid = trustedSigner(envelope, options.trustedKeys, file);
  const policyText = decodeUtf8(envelope.payload, file);
  const policy = options.parsePolicy(policyText, `${file} (payload)`);
  const { version, notAfter } = policy.metadata;
  const above = version > options.versionCounter ||
    (options.counterEqualDecidedLater === true && version === options.versionCounter);
  if (options.rollback !== true && !above) {
    throw new RefusedError(
      `Refused bundle ${file}: policy version ${version} is not greater than the anti-rollback counter ` +
        `${options.versionCounter} (a replayed or older bundle)`,
    );
  }
  if (notAfter !== undefined) checkNotAfter(notAfter, options.now, file);
  return { policyText, policy, keyid, version };
}

/**
 * The keyid of the first signature of `envelope` that verifies under a trusted key (over the PAE of its
 * payload type and payload); else an InputError naming `file` and `what` it is, and why each failed.
 */
export function trustedSigner(
  envelope: DsseEnvelope,
  trustedKeys: readonly TrustedKey[],
  file: string,
  what = "bundle",
): string {
  const { payloadType, payload, signatures } = envelope;
  const message = pae(payloadType, payload);
  const failed: string[] = [];
  for (const { keyid, sig } of signatures) {
    const key = trustedKeys.find((trusted) => trusted.keyid === keyid);
    if (key === undefined) continue;
    if (verifyBytes(sig, message, key.publicKey)) return keyid;
    failed.push(keyid);
  }
  const untrusted = signatures.map((s) => s.keyid).filter((keyid) => !failed.includes(keyid));
  const parts = [
    ...(failed.length > 0 ? [`the signature of trusted key ${failed.join(", ")} does not verify`] : []),
    ...(untrusted.length > 0 ? [`key ${untrusted.join(", ")} is not trusted`] : []),
  ];
  throw new InputError(`Bad signature in ${what} ${file}: ${parts.join("; ")}`, { position: { file } });
}

function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (error) {
    throw new InputError(`Invalid bundle ${file}: the payload is not UTF-8 text`, {
      position: { file },
      cause: error,
    });
  }
}

function checkNotAfter(notAfter: string | Date, now: Date, file: string): void {
  const limit = typeof notAfter === "string" ? parseRfc3339(notAfter, file) : notAfter;
  if (now.getTime() > limit.getTime()) {
    throw new RefusedError(
      `Refused bundle ${file}: the policy expired at ${limit.toISOString()} (notAfter), it is now ${now.toISOString()}`,
    );
  }
}

function parseRfc3339(text: string, file: string): Date {
  const rfc3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
  const date = new Date(text);
  if (!rfc3339.test(text) || Number.isNaN(date.getTime())) {
    throw new InputError(`Invalid bundle ${file}: notAfter ${JSON.stringify(text)} is not an RFC 3339 time`, {
      position: { file },
    });
  }
  return date;
}

/** What a bundle's text holds one of at least: a DSSE key, or an escape that could spell one. */
const BUNDLE_KEY_TEXT = ['"payloadType"', '"payload"', '"signatures"', "\\u"];

/**
 * Whether `text` is a bundle rather than a YAML or JSON policy: a JSON object with a DSSE key. A truncated
 * bundle still counts, so that it is reported as a broken bundle and not as a strange policy.
 */
export function isBundle(text: string): boolean {
  const trimmed = text.replace(/^\uFEFF/, "").trimStart();
  if (!trimmed.startsWith("{")) return false;
  // A policy of 100,000 rules is not parsed twice: without these keys written (or a \u escape that could
  // spell one) in its text, no JSON object has them and the broken-bundle test below cannot match.
  if (!BUNDLE_KEY_TEXT.some((key) => trimmed.includes(key))) return false;
  try {
    const value: unknown = JSON.parse(trimmed);
    if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
    return ["payloadType", "payload", "signatures"].some((key) => Object.hasOwn(value, key));
  } catch {
    return /"payloadType"\s*:/.test(trimmed);
  }
}
