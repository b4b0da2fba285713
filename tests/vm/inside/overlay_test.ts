import assert from "node:assert/strict";
import { HOOK } from "../../../ffi/mod.ts";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { resolvePlan } from "../../../lib/kernel/resolve.ts";
import { emptyPlan, type RuleInfo } from "../../../lib/policy/plan.ts";
import { drain } from "../../support/plane.ts";

// Overlay views of a denied file inside the qemu guest (the overlay module is loaded from tests/vm/modules):
// a rule named through an overlay denies the file read through that overlay, from its lower directory and
// through another overlay of the same lower directory.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const RULES: RuleInfo[] = [{ id: "default", area: "ingress", action: "deny" }, {
  id: "secret",
  area: "file",
  action: "deny",
}];

async function sh(script: string): Promise<{ code: number; out: string }> {
  const output = await new Deno.Command("sh", { args: ["-c", script], stdout: "piped", stderr: "piped" })
    .output();
  const decoder = new TextDecoder();
  return { code: output.code, out: (decoder.decode(output.stdout) + decoder.decode(output.stderr)).trim() };
}

function tryRead(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    return /os error 1\b/.test(String(error)) ? "EPERM" : String(error);
  }
}

Deno.test({
  name:
    "[vm] overlay: a file denied through an overlay is denied from its lower directory and another overlay",
  ignore: !inVm,
  fn: async () => {
    const bpffs = "/sys/fs/bpf/overlay";
    Deno.mkdirSync(bpffs, { recursive: true });
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-ovl-" });
    for (const name of ["lower", "upper", "work", "merged", "other", "upper2", "work2"]) {
      Deno.mkdirSync(`${dir}/${name}`);
    }
    Deno.writeTextFileSync(`${dir}/lower/secret`, "s");
    Deno.writeTextFileSync(`${dir}/lower/public`, "p");
    const mounted: string[] = [];
    const plane = DataPlane.open({ bpffs, areas: ["file"] });
    try {
      const mount = await sh(
        `mount -t overlay overlay -o lowerdir=${dir}/lower,upperdir=${dir}/upper,workdir=${dir}/work ${dir}/merged`,
      );
      assert.equal(mount.code, 0, `overlay mount (is the overlay module loaded?): ${mount.out}`);
      mounted.push(`${dir}/merged`);
      const apply = (mode: "audit" | "enforce") =>
        plane.apply(
          resolvePlan({
            ...emptyPlan(),
            mode,
            rules: RULES,
            files: [{ ruleId: 1, path: `${dir}/merged/secret` }],
          }),
        );
      await apply("enforce");
      // Mounted after apply: nothing of this overlay was known when the rule was resolved.
      // Its own upper layer: a single lower layer with none is refused before 6.5 (and on 6.12's build).
      const other = await sh(
        `mount -t overlay overlay -o lowerdir=${dir}/lower,upperdir=${dir}/upper2,workdir=${dir}/work2 ${dir}/other`,
      );
      assert.equal(other.code, 0, other.out);
      mounted.push(`${dir}/other`);

      assert.equal(tryRead(`${dir}/merged/secret`), "EPERM", "through the overlay");
      assert.equal(tryRead(`${dir}/lower/secret`), "EPERM", "from the lower directory");
      assert.equal(tryRead(`${dir}/other/secret`), "EPERM", "through another overlay of the same lower");
      assert.equal(tryRead(`${dir}/merged/public`), "p");
      assert.equal(tryRead(`${dir}/other/public`), "p");
      assert.ok(
        drain(plane).filter((event) => event.hook === HOOK.FILE_OPEN && event.decision === 0).length >= 3,
      );

      await apply("audit");
      assert.equal(tryRead(`${dir}/lower/secret`), "s");
      const audited = drain(plane).filter((event) => event.hook === HOOK.FILE_OPEN);
      assert.ok(audited.length === 1 && audited[0]?.decision === 1 && audited[0]?.ruleId === 1);
    } finally {
      plane.close();
      DataPlane.detach(bpffs);
      for (const path of mounted.toReversed()) await sh(`umount ${path}`);
      Deno.removeSync(bpffs);
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
