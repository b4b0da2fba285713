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

/**
 * The kernel dev_t of the filesystem that holds `realPath` (symlinks already resolved), read from
 * /proc/self/mountinfo text: the superblock's s_dev, which is what the hooks see. stat's st_dev is not
 * always it: on btrfs it names the subvolume. Undefined when no mount covers the path.
 */
export function superblockDev(realPath: string, mountinfo: string): number | undefined {
  let best: { point: string; dev: number } | undefined;
  for (const line of mountinfo.split("\n")) {
    const fields = line.split(" ");
    const [major, minor] = (fields[2] ?? "").split(":").map(Number);
    const point = unescapeOctal(fields[4] ?? "");
    if (major === undefined || minor === undefined || Number.isNaN(major) || Number.isNaN(minor) || !point) {
      continue;
    }
    const covers = point === "/" || realPath === point || realPath.startsWith(`${point}/`);
    // Later lines win a tie: a mount on top of another at the same point hides it.
    if (covers && (!best || point.length >= best.point.length)) best = { point, dev: (major << 20) | minor };
  }
  return best?.dev;
}

function unescapeOctal(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
