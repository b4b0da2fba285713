/**
 * Device numbers: stat(2) reports st_dev in the userspace encoding (glibc's makedev), while the kernel's
 * inode->i_sb->s_dev, which the BPF hooks read, uses MAJOR << 20 | MINOR.
 */

/** The kernel's dev_t for a userspace st_dev (as in Deno.stat's `dev`). */
export function kernelDev(statDev: number | bigint): number {
  const dev = BigInt(statDev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  if (major >= 1n << 12n || minor >= 1n << 20n) {
    throw new RangeError(`Device number does not fit the kernel encoding: major ${major}, minor ${minor}`);
  }
  return Number((major << 20n) | minor);
}

/** Major and minor of a kernel dev_t, for messages ("8:1"). */
export function formatKernelDev(dev: number): string {
  return `${dev >>> 20}:${dev & 0xfffff}`;
}
