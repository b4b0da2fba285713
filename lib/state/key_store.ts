/** The trusted-key store `<config-dir>/keys/` (SPEC section 4): one `<keyid>.pub` SPKI PEM file per key. */

import { basename, join } from "node:path";
import { InputError } from "../errors.ts";
import { decodePublicKeyPem, encodePublicKeyPem } from "../policy/pem.ts";
import { keyIdOf, type KeyPair, MIN_KEYID_PREFIX, type TrustedKey } from "../policy/keys.ts";
import { makePrivateDir, PRIVATE_FILE_MODE, refuseUnsafeAccess } from "./access.ts";
import { removeIfPresent, syncDirectory, writeFileAtomic } from "./files.ts";

/**
 * Writes `PREFIX.key` (mode 0600) and `PREFIX.pub` (mode 0644) for `keys gen --out PREFIX`, refusing to
 * replace either file.
 */
export function writeKeyPair(
  prefix: string,
  pair: KeyPair,
): { privateKeyFile: string; publicKeyFile: string } {
  const privateKeyFile = `${prefix}.key`;
  const publicKeyFile = `${prefix}.pub`;
  for (const file of [privateKeyFile, publicKeyFile]) {
    if (exists(file)) throw new InputError(`Key file ${file} already exists: choose another prefix`);
  }
  writeFileAtomic(privateKeyFile, pair.privateKeyPem, 0o600, { overwrite: false });
  writeFileAtomic(publicKeyFile, pair.publicKeyPem, 0o644, { overwrite: false });
  return { privateKeyFile, publicKeyFile };
}

export function keysDir(configDir: string): string {
  return join(configDir, "keys");
}

/**
 * Trusts the Ed25519 public key in `pemText` (read from `sourceName`): writes `<keyid>.pub` atomically,
 * mode 0600, in a keys directory made 0700. Anything but an Ed25519 SPKI public key is an InputError naming `sourceName`.
 */
export function addTrustedKey(
  configDir: string,
  pemText: string,
  sourceName: string,
): { keyid: string; file: string; added: boolean } {
  const publicKey = decodePublicKeyPem(pemText, sourceName);
  const keyid = keyIdOf(publicKey);
  const dir = keysDir(configDir);
  const file = join(dir, `${keyid}.pub`);
  const known = listTrustedKeys(configDir).find((entry) => entry.keyid === keyid);
  if (known !== undefined) return { keyid, file: known.file, added: false };
  makePrivateDir(dir);
  writeFileAtomic(file, encodePublicKeyPem(publicKey), PRIVATE_FILE_MODE);
  return { keyid, file, added: true };
}

/**
 * Stops trusting a key, named by its keyid or a unique prefix of at least MIN_KEYID_PREFIX hex digits.
 * Returns the keyid removed. Every file holding that key goes, whatever its name.
 */
export function removeTrustedKey(configDir: string, keyidOrPrefix: string): string {
  const keyid = findTrustedKey(configDir, keyidOrPrefix);
  for (const entry of listTrustedKeys(configDir)) if (entry.keyid === keyid) removeIfPresent(entry.file);
  syncDirectory(keysDir(configDir));
  return keyid;
}

/** The keyid of the one trusted key `keyidOrPrefix` names (at least MIN_KEYID_PREFIX hex digits). */
export function findTrustedKey(configDir: string, keyidOrPrefix: string): string {
  const wanted = keyidOrPrefix.toLowerCase();
  if (!new RegExp(`^[0-9a-f]{${MIN_KEYID_PREFIX},64}$`).test(wanted)) {
    throw new InputError(
      `Invalid keyid ${
        JSON.stringify(keyidOrPrefix)
      }: give the keyid or at least ${MIN_KEYID_PREFIX} of its hex digits`,
    );
  }
  const listing = listTrustedKeys(configDir);
  const keyids = [
    ...new Set(listing.flatMap((entry) => entry.keyid?.startsWith(wanted) ? [entry.keyid] : [])),
  ];
  const keyid = keyids[0];
  if (keyid === undefined) throw new InputError(`No trusted key ${wanted} in ${keysDir(configDir)}`);
  if (keyids.length > 1) {
    throw new InputError(`Keyid prefix ${wanted} is ambiguous: it matches ${keyids.join(", ")}`);
  }
  return keyid;
}

/** One file of the store: its keyid, or why it is not a usable key. */
export type KeyListing = { file: string; keyid?: string; problem?: string };

/**
 * Every file of the store, sorted by name, broken ones included with their problem (for `keys list`).
 * Hidden files are temporary files of an interrupted write and are skipped. No store is an empty list.
 */
export function listTrustedKeys(configDir: string): KeyListing[] {
  const dir = keysDir(configDir);
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].map((entry) => entry.name).filter((name) => !name.startsWith("."));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  return names.sort().map((name) => readListing(join(dir, name)));
}

function readListing(file: string): KeyListing {
  try {
    const key = readTrustedKey(file);
    return { file, keyid: key.keyid };
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    return { file, problem: error.message };
  }
}

/**
 * The trusted keys, for verification. A file in the store that is not an Ed25519 public key (or whose
 * `<keyid>.pub` name does not match its key) is an InputError naming it: a store is never half trusted.
 * A key, keys directory or config directory another user may write or own is refused (RefusedError): a
 * key someone else can replace is not a trusted key.
 */
export function loadTrustedKeys(configDir: string): TrustedKey[] {
  refuseUnsafeAccess(configDir, "the trusted keys");
  refuseUnsafeAccess(keysDir(configDir), "the trusted keys");
  const listing = listTrustedKeys(configDir);
  for (const { file } of listing) refuseUnsafeAccess(file, "trusted key", "key");
  const broken = listing.find((entry) => entry.problem !== undefined);
  if (broken?.problem !== undefined) {
    throw new InputError(broken.problem, { position: { file: broken.file } });
  }
  return listing.map((entry) => readTrustedKey(entry.file));
}

function readTrustedKey(file: string): TrustedKey {
  const name = basename(file);
  if (!name.endsWith(".pub") && !name.endsWith(".pem")) {
    throw new InputError(`Unexpected file ${file} in the trusted keys: keys are *.pub PEM files`, {
      position: { file },
    });
  }
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (error) {
    throw new InputError(`Cannot read trusted key ${file}: ${(error as Error).message}`, { cause: error });
  }
  const publicKey = decodePublicKeyPem(text, file);
  const keyid = keyIdOf(publicKey);
  if (/^[0-9a-f]{64}\.pub$/.test(name) && name !== `${keyid}.pub`) {
    throw new InputError(`Trusted key ${file} is named for another key: its keyid is ${keyid}`, {
      position: { file },
    });
  }
  return { keyid, publicKey, file };
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
