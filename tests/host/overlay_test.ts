import assert from "node:assert/strict";
import { ensureMounted } from "../../lib/kernel/mounts.ts";
import { loadPrograms, PROGRAMS } from "../../lib/kernel/object.ts";
import { fileIdentities, walkRuleTree } from "../../lib/kernel/resolve.ts";
import { must, rootTest, run } from "../support/privileged.ts";
import { drainEvents, writeRules } from "../support/slice.ts";

const AUDIT = 1;

/** An overlay of `lower` (with an upper and work dir) mounted at `<dir>/merged`; unmounted by `close`. */
async function overlay(dir: string, lower: string) {
  for (const name of ["upper", "work", "merged"]) Deno.mkdirSync(`${dir}/${name}`);
  const merged = `${dir}/merged`;
  await must("mount", [
    "-t",
    "overlay",
    "overlay",
    "-o",
    `lowerdir=${lower},upperdir=${dir}/upper,workdir=${dir}/work`,
    merged,
  ]);
  return { merged, upper: `${dir}/upper`, close: () => run("umount", [merged]) };
}

rootTest(
  "[root] a rule named through an overlay keys the overlay inode and the lower file behind it",
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-ovl-" });
    Deno.mkdirSync(`${dir}/lower`);
    Deno.writeTextFileSync(`${dir}/lower/secret`, "s");
    Deno.writeTextFileSync(`${dir}/lower/public`, "p");
    const mount = await overlay(dir, `${dir}/lower`);
    try {
      const mountinfo = Deno.readTextFileSync("/proc/self/mountinfo");
      const identities = fileIdentities(`${mount.merged}/secret`, mountinfo);
      assert.equal(identities.length, 2, "the overlay inode and the lower inode");
      const lower = fileIdentities(`${dir}/lower/secret`, mountinfo);
      assert.deepEqual(lower.length, 1, "a plain file is one inode");
      assert.ok(identities.some((id) => id.dev === lower[0]!.dev && id.ino === lower[0]!.ino));
      assert.equal(fileIdentities(`${mount.merged}/public`, mountinfo).length, 2);
    } finally {
      await mount.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
);

rootTest(
  "[root] a recursive rule over an overlay keys each file as a rule naming it does: overlay and layer inodes",
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-ovl-" });
    Deno.mkdirSync(`${dir}/lower/sub`, { recursive: true });
    Deno.writeTextFileSync(`${dir}/lower/sub/secret`, "s");
    Deno.writeTextFileSync(`${dir}/lower/public`, "p");
    const mount = await overlay(dir, `${dir}/lower`);
    try {
      Deno.writeTextFileSync(`${mount.merged}/sub/secret`, "copied up");
      const mountinfo = Deno.readTextFileSync("/proc/self/mountinfo");
      const walked = new Map<string, { dev: number; ino: bigint }[]>();
      const target = { ruleId: 0, path: mount.merged, recursive: true };
      walkRuleTree(target, "r", mountinfo, (identities, path) => void walked.set(path, identities));
      const key = (ids: { dev: number; ino: bigint }[]) => ids.map(({ dev, ino }) => `${dev}:${ino}`).sort();
      assert.deepEqual([...walked.keys()].sort(), [`${mount.merged}/public`, `${mount.merged}/sub/secret`]);
      for (const [path, identities] of walked) {
        assert.deepEqual(key(identities), key(fileIdentities(path, mountinfo)), path);
      }
      assert.equal(walked.get(`${mount.merged}/sub/secret`)!.length, 3, "overlay, upper copy and lower file");
    } finally {
      await mount.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
);

rootTest(
  "[root] the openat tracepoint reports a file denied through an overlay read from its lower directory",
  async () => {
    ensureMounted("tracefs");
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-ovl-" });
    Deno.mkdirSync(`${dir}/lower`);
    Deno.writeTextFileSync(`${dir}/lower/secret`, "s");
    Deno.writeTextFileSync(`${dir}/lower/public`, "p");
    const mount = await overlay(dir, `${dir}/lower`);
    const object = loadPrograms([PROGRAMS.fileOpenAudit]);
    try {
      const mountinfo = Deno.readTextFileSync("/proc/self/mountinfo");
      const files = fileIdentities(`${mount.merged}/secret`, mountinfo).map((id) => ({ ...id, ruleId: 7 }));
      writeRules(object, { plan: { mode: "enforce" }, files });
      object.program(PROGRAMS.fileOpenAudit).attach();

      assert.equal(Deno.readTextFileSync(`${dir}/lower/secret`), "s", "the lower directory");
      assert.equal(Deno.readTextFileSync(`${mount.merged}/secret`), "s", "the overlay");
      Deno.readTextFileSync(`${dir}/lower/public`);
      Deno.readTextFileSync(`${mount.merged}/public`);
      const events = drainEvents(object).filter((event) => event.pid === Deno.pid);
      assert.equal(events.length, 2, "one report per view of the secret, none for the public file");
      assert.ok(events.every((event) => event.ruleId === 7 && event.decision === AUDIT));
      assert.deepEqual(
        new Set(events.map((event) => `${event.dev}:${event.ino}`)),
        new Set(files.map((id) => `${id.dev}:${id.ino}`)),
        "the lower inode and the overlay inode",
      );
    } finally {
      object.close();
      await mount.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
);
