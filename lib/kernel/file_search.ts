import { Buffer } from "node:buffer";

/**
 * Whether the file at `path` holds `needle`, read `chunkBytes` at a time: the kernel's BTF
 * (/sys/kernel/btf/vmlinux, megabytes) is searched for one name without holding all of it in memory, where a
 * long-running agent's heap would keep the pages of one whole read.
 */
export function fileContains(path: string, needle: Uint8Array, chunkBytes = 64 * 1024): boolean {
  if (needle.length === 0) return true;
  // Each read lands after the tail of the one before, so that a needle across two reads is found.
  const keep = needle.length - 1;
  const buffer = new Uint8Array(keep + Math.max(chunkBytes, needle.length));
  using file = Deno.openSync(path);
  let held = 0;
  for (;;) {
    const read = file.readSync(buffer.subarray(held));
    if (read === null) return false;
    const filled = held + read;
    // Buffer's indexOf is native: a needle that starts with a common byte (NUL, in BTF) costs no JS loop.
    if (Buffer.from(buffer.buffer, 0, filled).indexOf(needle) >= 0) return true;
    held = Math.min(keep, filled);
    buffer.copyWithin(0, filled - held, filled);
  }
}
