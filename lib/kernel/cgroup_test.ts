import assert from "node:assert/strict";
import { findCgroup2Mount } from "./cgroup.ts";
import { isMounted } from "./mounts.ts";

const HYBRID = [
  "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0",
  "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0",
  "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0",
].join("\n");

Deno.test("findCgroup2Mount() finds cgroup v2 in a hybrid layout", () => {
  assert.equal(findCgroup2Mount(HYBRID), "/sys/fs/cgroup/unified");
});

Deno.test("findCgroup2Mount() unescapes octal escapes and reports a missing cgroup2", () => {
  assert.equal(findCgroup2Mount("none /mnt/my\\040cg cgroup2 rw 0 0"), "/mnt/my cg");
  assert.equal(findCgroup2Mount("proc /proc proc rw 0 0"), undefined);
});

Deno.test("isMounted() matches type and mount point", () => {
  assert.equal(isMounted(HYBRID, "cgroup2", "/sys/fs/cgroup/unified"), true);
  assert.equal(isMounted(HYBRID, "bpf", "/sys/fs/bpf"), false);
  assert.equal(isMounted(HYBRID, "cgroup2", "/sys/fs/cgroup"), false);
});
