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

/**
 * The kernel dev_t of the superblock behind mount `mountId`, from /proc/self/mountinfo text (fields:
 * mount id, parent id, major:minor, ...): what the hooks see as inode->i_sb->s_dev. stat's st_dev is not
 * always it: on btrfs it names the subvolume. Undefined when the mount is not listed.
 */
export function mountDev(mountId: number, mountinfo: string): number | undefined {
  for (const line of mountinfo.split("\n")) {
    const [id, , devices] = line.split(" ");
    if (Number(id) !== mountId || !devices) continue;
    const [major, minor] = devices.split(":").map(Number);
    if (major === undefined || minor === undefined || Number.isNaN(major) || Number.isNaN(minor)) {
      return undefined;
    }
    return (major << 20) | minor;
  }
  return undefined;
}
