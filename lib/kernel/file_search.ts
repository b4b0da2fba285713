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
    if (holds(buffer.subarray(0, filled), needle)) return true;
    held = Math.min(keep, filled);
    buffer.copyWithin(0, filled - held, filled);
  }
}

/**
 * Whether `haystack` holds `needle`. The candidates are found by the typed array's native indexOf of the
 * needle's first byte that is not NUL (NUL, which ends every BTF name, is the commonest byte there): a few
 * milliseconds for a distribution kernel's BTF, where Buffer's indexOf of a byte needle is a loop in
 * JavaScript here, tens of milliseconds.
 */
function holds(haystack: Uint8Array, needle: Uint8Array): boolean {
  const anchor = Math.max(0, needle.findIndex((byte) => byte !== 0));
  const last = haystack.length - needle.length + anchor;
  for (let at = haystack.indexOf(needle[anchor]!, anchor); at >= 0 && at <= last;) {
    const start = at - anchor;
    let i = 0;
    while (i < needle.length && haystack[start + i] === needle[i]) i++;
    if (i === needle.length) return true;
    at = haystack.indexOf(needle[anchor]!, at + 1);
  }
  return false;
}
