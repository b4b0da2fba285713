/**
 * Who else may reach aegisbpf's private directories and trusted keys (SPEC section 9: directories 0700,
 * files 0600). A directory or key another user can write is one that user controls: `run` refuses it,
 * `doctor` fails it and key loading refuses it. A directory others can only read or enter leaks the event
 * log and lets them hold a lock open on its files: a warning. Nothing here touches the kernel.
 */

import { RefusedError } from "../errors.ts";

/** The mode of every directory aegisbpf makes for its state, configuration and keys. */
export const PRIVATE_DIR_MODE = 0o700;
/** The mode of every file aegisbpf writes there (the metrics textfile, read by node_exporter, excepted). */
export const PRIVATE_FILE_MODE = 0o600;

export type AccessStatus = "ok" | "warn" | "fail";
export type AccessFinding = { status: AccessStatus; detail: string; remediation?: string };

/** What is checked: a private directory, or a trusted key file (public: only writing it matters). */
export type AccessKind = "directory" | "key";

/** The parts of a stat this needs (Deno.FileInfo has them). */
export type AccessInfo = { uid: number | null; mode: number | null; isDirectory: boolean };

/**
 * What is wrong with who may reach `path`, given its stat and the uid aegisbpf runs as (undefined: not
 * known, and only root counts as the owner it should be); pure.
 */
export function accessFinding(
  path: string,
  info: AccessInfo,
  ownUid: number | undefined,
  kind: AccessKind,
): AccessFinding {
  if (info.isDirectory !== (kind === "directory")) {
    const want = kind === "directory" ? "a directory" : "a file";
    return { status: "fail", detail: `${path} is not ${want}`, remediation: `remove or rename ${path}` };
  }
  const mode = (info.mode ?? 0) & 0o7777;
  const octal = `0${mode.toString(8)}`;
  const privateMode = kind === "directory" ? "0700" : "0600";
  if (info.uid !== null && info.uid !== 0 && info.uid !== ownUid) {
    return {
      status: "fail",
      detail: `${path} is owned by uid ${info.uid}: that user can change what aegisbpf trusts`,
      remediation: `chown ${ownUid ?? 0} ${path} && chmod ${privateMode} ${path}`,
    };
  }
  if (mode & 0o022) {
    const who = mode & 0o002 ? "world-writable" : "group-writable";
    return {
      status: "fail",
      detail: `${path} is ${who} (mode ${octal}): other users can change what aegisbpf trusts`,
      remediation: `chmod ${privateMode} ${path}`,
    };
  }
  if (kind === "directory" && mode & 0o077) {
    return {
      status: "warn",
      detail: `${path} can be read or entered by other users (mode ${octal}): they can read what it holds ` +
        "and open its files",
      remediation: `chmod 0700 ${path}`,
    };
  }
  return { status: "ok", detail: `${path}: owner uid ${info.uid}, mode ${octal}` };
}

/** The finding for `path` as it is on disk (following a symlink), or undefined when it does not exist. */
export function accessOf(path: string, kind: AccessKind, ownUid = processUid()): AccessFinding | undefined {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    return { status: "fail", detail: `${path}: ${(error as Error).message}` };
  }
  return accessFinding(path, info, ownUid, kind);
}

/** The uid this process runs as; undefined where it may not ask (tests run without --allow-sys). */
function processUid(): number | undefined {
  try {
    return Deno.uid() ?? undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return undefined;
    throw error;
  }
}

/** Throws a RefusedError (exit 3) naming `path` and the fix when others can change it; returns warnings. */
export function refuseUnsafeAccess(
  path: string,
  what: string,
  kind: AccessKind = "directory",
): AccessFinding | undefined {
  const finding = accessOf(path, kind);
  if (finding?.status !== "fail") return finding?.status === "warn" ? finding : undefined;
  const fix = finding.remediation === undefined ? "" : `; fix it with: ${finding.remediation}`;
  throw new RefusedError(`Refused ${what}: ${finding.detail}${fix}`);
}

/**
 * Makes `path` (and any missing parent) mode 0700 whatever the umask; an existing directory is left as it
 * is, for `run` and `doctor` to judge. Every state, config and keys directory is made through here.
 */
export function makePrivateDir(path: string): void {
  Deno.mkdirSync(path, { recursive: true, mode: PRIVATE_DIR_MODE });
}
