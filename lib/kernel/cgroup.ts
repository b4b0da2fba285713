/** Where cgroup v2 is mounted: found in /proc/mounts, never assumed (hybrid hosts mount it elsewhere). */
export function findCgroup2Mount(procMounts: string): string | undefined {
  for (const line of procMounts.split("\n")) {
    const [, mountPoint, fsType] = line.split(" ");
    if (fsType === "cgroup2" && mountPoint) return unescapeMountPath(mountPoint);
  }
  return undefined;
}

/** The cgroup v2 root of this host, or an Error saying cgroup v2 is not mounted. */
export function cgroup2Root(): string {
  const root = findCgroup2Mount(Deno.readTextFileSync("/proc/mounts"));
  if (!root) throw new Error("cgroup v2 is not mounted: no cgroup2 entry in /proc/mounts");
  return root;
}

/** /proc/mounts escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
