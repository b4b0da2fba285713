import assert from "node:assert/strict";
import { kernelDev, mountDev } from "./dev.ts";

Deno.test("kernelDev() converts glibc's st_dev encoding to the kernel's MAJOR << 20 | MINOR", () => {
  // makedev(8, 1) = 0x801 in userspace; the kernel's s_dev is 8 << 20 | 1.
  assert.equal(kernelDev(0x801), (8 << 20) | 1);
  // makedev(259, 3): major above 255 uses bits 8..19; 259 << 8 | 3.
  assert.equal(kernelDev((259 << 8) | 3), (259 << 20) | 3);
  // makedev(0, 300): minor above 255 spills into bits 20..31.
  assert.equal(kernelDev(((300 & ~0xff) << 12) | (300 & 0xff)), 300);
  // anonymous devices such as tmpfs: major 0.
  assert.equal(kernelDev(0x2d), 0x2d);
  assert.equal(kernelDev(0x801n), (8 << 20) | 1);
});

Deno.test("kernelDev() refuses device numbers that the kernel encoding cannot hold", () => {
  assert.throws(() => kernelDev(1n << 44n), RangeError);
});

const MOUNTINFO = [
  "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw",
  "30 22 0:45 /home /home rw,relatime shared:2 - btrfs /dev/vdb rw,subvol=/home",
  "31 22 0:46 / /tmp rw shared:3 - tmpfs tmpfs rw",
].join("\n");

Deno.test("mountDev() gives the superblock device of a mount id", () => {
  assert.equal(mountDev(22, MOUNTINFO), (254 << 20) | 1);
  assert.equal(mountDev(30, MOUNTINFO), 45, "btrfs: the superblock's anonymous device, not the subvolume's");
  assert.equal(mountDev(99, MOUNTINFO), undefined);
});
