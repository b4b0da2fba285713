/**
 * Sanity checks of the guest environment built by tests/vm/harness.ts. They run only inside the VM
 * (AEGIS_IN_VM=1); on the host they are ignored.
 */

const inVm = Deno.env.get("AEGIS_IN_VM") === "1";

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

interface Mount {
  source: string;
  target: string;
  type: string;
  options: string;
}

function readMounts(): Mount[] {
  return Deno.readTextFileSync("/proc/mounts").split("\n").filter((l) => l.trim() !== "").map((line) => {
    const [source = "", target = "", type = "", options = ""] = line.split(" ");
    return { source, target, type, options };
  });
}

Deno.test({
  name: "[vm] BPF LSM is active in the guest kernel",
  ignore: !inVm,
  fn() {
    const lsm = Deno.readTextFileSync("/sys/kernel/security/lsm").trim();
    const active = lsm.split(",").map((s) => s.trim());
    console.log(`kernel ${Deno.osRelease()}, active LSMs: ${lsm}`);
    assert(active.includes("bpf"), `The bpf LSM is not active in the guest kernel (lsm: ${lsm})`);
  },
});

Deno.test({
  name: "[vm] bpffs and cgroup2 are mounted",
  ignore: !inVm,
  fn() {
    const mounts = readMounts();
    const bpffs = mounts.find((m) => m.type === "bpf");
    const cgroup2 = mounts.find((m) => m.type === "cgroup2");
    assert(bpffs, "No bpf filesystem in /proc/mounts");
    assert(bpffs.target === "/sys/fs/bpf", `bpffs is mounted on ${bpffs.target}, not /sys/fs/bpf`);
    assert(cgroup2, "No cgroup2 filesystem in /proc/mounts");
    assert(
      Deno.statSync(`${cgroup2.target}/cgroup.procs`).isFile,
      `No cgroup.procs under the cgroup2 mount ${cgroup2.target}`,
    );
  },
});

Deno.test({
  name: "[vm] npm imports resolve offline",
  ignore: !inVm,
  async fn() {
    // Imported through the deno.json import map, from the DENO_DIR the harness prepared on the host.
    const { z } = await import("zod");
    const Rule = z.object({ path: z.string().startsWith("/"), action: z.enum(["allow", "deny"]) });
    const ok = Rule.safeParse({ path: "/etc/shadow", action: "deny" });
    assert(ok.success, "zod rejected a valid value");
    const bad = Rule.safeParse({ path: "relative", action: "maybe" });
    assert(!bad.success, "zod accepted an invalid value");
    assert(bad.error.issues.length === 2, `Expected 2 zod issues, got ${bad.error.issues.length}`);
  },
});
