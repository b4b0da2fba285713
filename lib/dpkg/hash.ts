/**
 * MD5 of many files, as fast as this host allows: below a few megabytes in this process; above, split across
 * `md5sum` processes (coreutils), one per CPU, run at once and waited for. Synchronous on purpose: it runs
 * inside the resolution of a plan, which is synchronous.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";

const CHUNK = 1 << 20;
/** Below this many bytes to hash, starting processes costs more than it saves. */
const IN_PROCESS_BYTES = 32 << 20;

/** The MD5 (hex) of each file that could be read; a file missing from the result could not be. */
export function md5Files(files: readonly { path: string; size: number }[]): Map<string, string> {
  const bytes = files.reduce((sum, file) => sum + file.size, 0);
  if (bytes >= IN_PROCESS_BYTES && files.length > 1) {
    const hashed = md5InProcesses(files);
    if (hashed !== undefined) return hashed;
  }
  const hashed = new Map<string, string>();
  for (const { path } of files) {
    try {
      hashed.set(path, md5OfFile(path));
    } catch {
      // Left out: the caller reports it as unreadable.
    }
  }
  return hashed;
}

export function md5OfFile(path: string): string {
  const hash = createHash("md5");
  using file = Deno.openSync(path, { read: true });
  const chunk = new Uint8Array(CHUNK);
  for (;;) {
    const read = file.readSync(chunk);
    if (read === null) break;
    hash.update(chunk.subarray(0, read));
  }
  return hash.digest("hex");
}

/**
 * One `md5sum -z` per CPU over a share of the files (balanced by size), each writing its own output file,
 * so that nothing interleaves. Undefined when md5sum cannot be run here (the caller hashes in process).
 */
function md5InProcesses(files: readonly { path: string; size: number }[]): Map<string, string> | undefined {
  const workers = Math.max(1, Math.min(8, navigator.hardwareConcurrency || 1));
  const shares: { paths: string[]; bytes: number }[] = Array.from({ length: workers }, () => ({
    paths: [],
    bytes: 0,
  }));
  for (const file of [...files].sort((a, b) => b.size - a.size)) {
    const share = shares.reduce((least, next) => next.bytes < least.bytes ? next : least);
    share.paths.push(file.path);
    share.bytes += file.size;
  }
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-md5-" });
  try {
    const encoder = new TextEncoder();
    shares.forEach((share, i) =>
      Deno.writeFileSync(join(dir, `list.${i}`), encoder.encode(share.paths.map((p) => `${p}\0`).join("")))
    );
    const script = shares.map((_, i) =>
      `xargs -0 -a "$1/list.${i}" md5sum -z -- >"$1/out.${i}" 2>/dev/null &`
    ).join("\n") + "\nwait\n";
    // Its exit status does not matter: xargs exits 123 when a file could not be read, which is then left
    // out of the output; the caller reports it as unreadable.
    try {
      new Deno.Command("sh", { args: ["-c", script, "sh", dir], stdout: "null", stderr: "null" })
        .outputSync();
    } catch {
      return undefined;
    }
    const hashed = new Map<string, string>();
    const decoder = new TextDecoder();
    for (let i = 0; i < shares.length; i++) {
      let out: string;
      try {
        out = decoder.decode(Deno.readFileSync(join(dir, `out.${i}`)));
      } catch {
        return undefined;
      }
      for (const record of out.split("\0")) {
        if (record.length < 35 || record[32] !== " ") {
          continue;
        }
        // "MD5  PATH" (the second character a space for text mode, * for binary).
        hashed.set(record.slice(34), record.slice(0, 32));
      }
    }
    // md5sum missing here (a minimal system): nothing hashed although there were files.
    if (hashed.size === 0) {
      return undefined;
    }
    return hashed;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
