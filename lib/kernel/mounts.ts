import { mountPseudoFs } from "../../ffi/mod.ts";

/**
 * The pseudo filesystems the hooks need. Hosts without systemd (and this project's test machines) may
 * boot without them; aegisbpf mounts them where they are missing, as systemd would.
 */
export const PSEUDO_FILESYSTEMS = {
  bpf: "/sys/fs/bpf",
  tracefs: "/sys/kernel/tracing",
  securityfs: "/sys/kernel/security",
} as const;
export type PseudoFs = keyof typeof PSEUDO_FILESYSTEMS;

/** Whether a filesystem of `type` is mounted at `path`, according to /proc/mounts text. */
export function isMounted(procMounts: string, type: string, path: string): boolean {
  return procMounts.split("\n").some((line) => {
    const [, mountPoint, fsType] = line.split(" ");
    return fsType === type && mountPoint === path;
  });
}

/** Mounts `type` at its usual place unless it is already there. */
export function ensureMounted(type: PseudoFs): void {
  const path = PSEUDO_FILESYSTEMS[type];
  if (isMounted(Deno.readTextFileSync("/proc/mounts"), type, path)) return;
  mountPseudoFs(type, path);
}
