/**
 * Signed releases: an in-toto Statement v1 naming each release artifact by sha256, in a DSSE envelope signed
 * with an Ed25519 release key (the DSSE and key code of signed policy bundles, lib/policy/). What
 * `aegisbpf release verify` checks, offline.
 * https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md
 */

import { InputError } from "../errors.ts";
import { trustedSigner } from "../policy/bundle.ts";
import { pae, parseEnvelope, serializeEnvelope } from "../policy/dsse.ts";
import { readSigningKey, signBytes, type TrustedKey } from "../policy/keys.ts";

export const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
/** The DSSE payload type of an in-toto statement. */
export const INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";
/** Ours: the predicate says which product and version the subjects are the release of. */
export const RELEASE_PREDICATE_TYPE = "https://aegisbpf.io/release/v1";

/** A file by its name (no directory) or an image by its reference, and its sha256 in lowercase hex. */
export type Subject = { name: string; digest: { sha256: string } };

export type ReleaseStatement = { product: string; version: string; subjects: Subject[] };

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** The statement as JSON text: subjects in the order given, the predicate naming product and version. */
export function statementText(release: ReleaseStatement): string {
  return JSON.stringify({
    _type: STATEMENT_TYPE,
    subject: release.subjects.map(({ name, digest }) => ({ name, digest: { sha256: digest.sha256 } })),
    predicateType: RELEASE_PREDICATE_TYPE,
    predicate: { product: release.product, version: release.version },
  });
}

/** The DSSE envelope (one line of JSON, newline-terminated) of `release`, signed with a PKCS#8 key. */
export function signRelease(release: ReleaseStatement, privateKeyPem: string, keyFile: string): string {
  checkSubjects(release.subjects, (detail) => new InputError(`Cannot sign the release: ${detail}`));
  const key = readSigningKey(privateKeyPem, keyFile);
  const payload = new TextEncoder().encode(statementText(release));
  const sig = signBytes(pae(INTOTO_PAYLOAD_TYPE, payload), key);
  return serializeEnvelope({
    payloadType: INTOTO_PAYLOAD_TYPE,
    payload,
    signatures: [{ keyid: key.keyid, sig }],
  });
}

/** An envelope whose signature verified, and the statement it carries. */
export type VerifiedRelease = ReleaseStatement & { keyid: string };

/**
 * Reads an envelope strictly (InputError for one that is malformed or truncated), then its signature under
 * `trustedKeys` (SignatureError: altered, or signed by another key), then its statement (InputError).
 */
export function verifyReleaseEnvelope(
  text: string,
  file: string,
  trustedKeys: readonly TrustedKey[],
): VerifiedRelease {
  const envelope = parseEnvelope(text, file, INTOTO_PAYLOAD_TYPE, "release envelope");
  let keyid: string;
  try {
    keyid = trustedSigner(envelope, trustedKeys, file, "release envelope");
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    throw new SignatureError(error.message);
  }
  return { ...parseStatement(envelope.payload, file), keyid };
}

/** The envelope is well-formed but no trusted key signed what it holds: every artifact is unverified. */
export class SignatureError extends Error {
  override name = "SignatureError";
}

/** What `release verify` says of one artifact. */
export type ArtifactVerdict = { file: string; ok: boolean; reason: string };

/** Each artifact (its name without directory and its sha256) against the statement's subjects. */
export function judgeArtifacts(
  release: ReleaseStatement,
  artifacts: ReadonlyArray<{ file: string; name: string; sha256: string }>,
): ArtifactVerdict[] {
  return artifacts.map(({ file, name, sha256 }) => {
    const subject = release.subjects.find((s) => s.name === name);
    if (subject === undefined) {
      return {
        file,
        ok: false,
        reason: `${name} is not a subject of the ${release.product} ${release.version} statement`,
      };
    }
    if (subject.digest.sha256 !== sha256) {
      return {
        file,
        ok: false,
        reason:
          `sha256 ${sha256} differs from the statement's ${subject.digest.sha256} (altered, or another build)`,
      };
    }
    return {
      file,
      ok: true,
      reason: `sha256 ${sha256} matches the ${release.product} ${release.version} release`,
    };
  });
}

function parseStatement(payload: Uint8Array, file: string): ReleaseStatement {
  const bad = (detail: string) =>
    new InputError(`Invalid release statement in ${file}: ${detail}`, { position: { file } });
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch {
    throw bad("the payload is not JSON text");
  }
  const statement = record(value, "the statement", bad);
  if (statement._type !== STATEMENT_TYPE) throw bad(`_type must be ${JSON.stringify(STATEMENT_TYPE)}`);
  if (statement.predicateType !== RELEASE_PREDICATE_TYPE) {
    throw bad(`predicateType must be ${JSON.stringify(RELEASE_PREDICATE_TYPE)}`);
  }
  const predicate = record(statement.predicate, "predicate", bad);
  if (typeof predicate.product !== "string" || typeof predicate.version !== "string") {
    throw bad("predicate must name the product and version");
  }
  if (!Array.isArray(statement.subject)) throw bad("subject must be an array");
  const subjects = statement.subject.map((item: unknown, i): Subject => {
    const subject = record(item, `subject[${i}]`, bad);
    const digest = record(subject.digest, `subject[${i}].digest`, bad);
    if (typeof subject.name !== "string" || typeof digest.sha256 !== "string") {
      throw bad(`subject[${i}] needs a name and a sha256 digest`);
    }
    return { name: subject.name, digest: { sha256: digest.sha256 } };
  });
  checkSubjects(subjects, bad);
  return { product: predicate.product, version: predicate.version, subjects };
}

/** At least one subject, names unique and non-empty, digests lowercase hex SHA-256. */
function checkSubjects(subjects: readonly Subject[], bad: (detail: string) => Error): void {
  if (subjects.length === 0) throw bad("no subjects");
  const seen = new Set<string>();
  for (const { name, digest } of subjects) {
    if (name === "" || seen.has(name)) throw bad(`subject name ${JSON.stringify(name)} is empty or repeated`);
    seen.add(name);
    if (!SHA256_HEX.test(digest.sha256)) throw bad(`the sha256 of ${name} is not 64 lowercase hex digits`);
  }
}

function record(value: unknown, where: string, bad: (detail: string) => Error): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad(`${where} must be an object`);
  }
  return value as Record<string, unknown>;
}
