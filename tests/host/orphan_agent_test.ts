/**
 * An interrupted run's agents: a test agent whose test process is gone (its runner killed) would run on
 * forever, its programs attached, holding its links past the unmount of its bpffs. The next run's first
 * private bpffs kills it before it unmounts the leftover mounts (tests/support/bpffs.ts).
 */
import assert from "node:assert/strict";
import { TestBpffs } from "../support/bpffs.ts";
import { rootTest } from "../support/privileged.ts";

/** A pid above the kernel's pid_max is never alive: the name of a test process that is gone. */
const GONE = (4_194_304 + 1).toString(36);

async function orphan(bpffs: string): Promise<Deno.ChildProcess> {
  const child = new Deno.Command("sleep", {
    args: ["600"],
    env: { AEGISBPF_BPFFS: bpffs },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  // The environment is readable once the exec is done.
  for (let i = 0; i < 100 && !Deno.readTextFileSync(`/proc/${child.pid}/cmdline`).startsWith("sleep"); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return child;
}

rootTest(
  "[root] a test agent whose test process is gone is killed by the next run's bpffs, a live one's is kept",
  async () => {
    const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
    const orphaned = await orphan(`${tmp}/aegisbpf-test-bpffs-${GONE}-zz1`);
    const owned = await orphan(`${tmp}/aegisbpf-test-bpffs-${Deno.pid.toString(36)}-zz1`);
    const other = await orphan(`${tmp}/somebody-elses-bpffs-${GONE}-zz1`);
    try {
      const bpffs = await TestBpffs.mount();
      await bpffs.unmount();
      const status = await Promise.race([
        orphaned.status,
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5000)),
      ]);
      assert.equal(status?.signal, "SIGKILL", "the orphaned agent is killed");
      for (const child of [owned, other]) {
        assert.ok(
          Deno.readTextFileSync(`/proc/${child.pid}/environ`) !== "",
          "a live test's or another prefix's process is kept",
        );
      }
    } finally {
      for (const child of [orphaned, owned, other]) {
        try {
          child.kill("SIGKILL");
        } catch {
          // already gone
        }
        await child.status;
      }
    }
  },
);
