import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { sha256OfFile } from "../../lib/kernel/resolve.ts";
import { readApplied } from "../../lib/state/apply_state.ts";
import { listHistory } from "../../lib/state/history.ts";
import { scratch } from "../cli/cli.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { rootTest } from "../support/privileged.ts";

// `policy apply` of an exec allowlist on this host (exec audit-only here: the policy is in audit mode):
// the survival-set refusal, a sha256 entry's check at apply, and the re-apply a package upgrade needs.
const policy = (version: number, allow: string) =>
  `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: allow-test
  version: ${version}
spec:
  mode: audit
  exec:
    default: deny
    allow:
${allow}`;

rootTest(
  "[root] exec allowlist apply: refused without the survival set, refused on a sha256 mismatch, applied again after a replace",
  async () => {
    const bpffs = await TestBpffs.mount();
    try {
      await using s = await scratch();
      const run = (args: string[]) => s.run(args, { env: { AEGISBPF_BPFFS: bpffs.path } });
      try {
        const tools = `${s.dir}/tools`;
        Deno.mkdirSync(tools);
        const tool = `${tools}/tool`;
        Deno.copyFileSync(Deno.realPathSync("/bin/true"), tool);
        Deno.copyFileSync(Deno.realPathSync("/bin/true"), `${tools}/other`);
        const entries = `      - { id: tools, path: ${tools}, recursive: true }\n`;
        await Deno.writeTextFile(`${s.dir}/narrow.yaml`, policy(1, entries));

        const refused = await run(["policy", "apply", `${s.dir}/narrow.yaml`]);
        assert.equal(refused.code, 3, refused.stderr);
        assert.match(refused.stderr, /exec\.default: deny refuses \S+ld-linux[^ ]* \(mapped executable/);
        assert.equal(readApplied(s.stateDir), undefined, "nothing applied");

        const hashed = `      - { id: pinned, path: ${tool}, sha256: ${"f".repeat(64)} }\n`;
        await Deno.writeTextFile(`${s.dir}/hashed.yaml`, policy(2, entries + hashed));
        const mismatch = await run(["policy", "apply", "--force", `${s.dir}/hashed.yaml`]);
        assert.equal(mismatch.code, 2, mismatch.stderr);
        assert.match(mismatch.stderr, new RegExp(`Rule pinned: ${tool} has sha256 ${sha256OfFile(tool)}`));
        assert.equal(readApplied(s.stateDir), undefined, "nothing applied");

        const good = `      - { id: pinned, path: ${tool}, sha256: ${sha256OfFile(tool)} }\n`;
        await Deno.writeTextFile(`${s.dir}/good.yaml`, policy(3, entries + good));
        const applied = await run(["policy", "apply", "--force", `${s.dir}/good.yaml`]);
        assert.equal(applied.code, 0, applied.stderr);
        const allowed = readApplied(s.stateDir)?.allowed ?? [];
        assert.deepEqual(allowed.map((entry) => [entry.rule, entry.ctimeNs !== undefined]), [
          ["tools", false],
          ["pinned", true],
        ]);

        const again = await run(["policy", "apply", "--force", "--json", `${s.dir}/good.yaml`]);
        assert.equal(again.code, 0, again.stderr);
        assert.match(again.stdout, /"outcome":"unchanged"/, "nothing changed: nothing to do");

        // An upgrade's way: a new file renamed over the allowed one. The same policy applied again trusts it.
        Deno.copyFileSync(Deno.realPathSync("/bin/false"), `${tools}/other.new`);
        Deno.renameSync(`${tools}/other.new`, `${tools}/other`);
        const seqBefore = listHistory(s.stateDir).length;
        const upgraded = await run(["policy", "apply", "--force", "--json", `${s.dir}/good.yaml`]);
        assert.equal(upgraded.code, 0, upgraded.stderr);
        assert.doesNotMatch(upgraded.stdout, /"outcome":"unchanged"/, "a new allowed inode: a real apply");
        assert.equal(listHistory(s.stateDir).length, seqBefore + 1);
      } finally {
        DataPlane.detach(bpffs.path);
      }
    } finally {
      await bpffs.unmount();
    }
  },
);
