import assert from "node:assert/strict";
import type { RuleInfo } from "../../lib/policy/plan.ts";
import { checkHealth } from "../../lib/report/health.ts";
import { ruleSet, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { buildPtraceWorker, PtraceVictim } from "../support/ptrace_worker.ts";

const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "secret", area: "file", action: "deny" },
  { id: "scope.ptrace", area: "exec", action: "deny" },
];

// The ptrace guard is a BPF-LSM program. Where BPF-LSM cannot load (this project's hosts: see
// tests/vm/inside/ptrace_test.ts for where it does), a scoped policy leaves the door open: the test shows
// the injection going through and health saying so, rather than claiming a guard that is not there.
rootTest(
  "[root] ptrace guard where BPF-LSM cannot load: not attached, the injection goes through, health says so",
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-ptrace-" });
    Deno.chmodSync(dir, 0o755);
    const secret = `${dir}/secret`;
    Deno.writeTextFileSync(secret, "s3cret\n");
    Deno.chmodSync(secret, 0o644);
    try {
      const worker = await buildPtraceWorker(dir);
      await withPlane({ areas: ["file"] }, async ({ plane, cgroup, bpffs }) => {
        const canary = cgroup.child("canary");
        const other = cgroup.child("other");
        await plane.apply(ruleSet({
          mode: "enforce",
          rules: RULES,
          files: [{ ruleId: 1, path: secret }],
          scope: { include: [canary.relativePath], exempt: [] },
          ptraceGuard: { ruleId: 2 },
        }));
        const health = () =>
          checkHealth({ bpffs: bpffs.path, stateDir: dir, configDir: dir }, {
            requireEnforce: false,
            connections: false,
            staleRules: false,
          }).warnings.filter((line) => line.startsWith("the ptrace guard"));
        if (plane.status.file.mode === "enforce") {
          // A host where BPF-LSM loads: the guard is there, and health has nothing to say about it.
          assert.ok(plane.links.includes("aegis_ptrace_access"), plane.links.join(", "));
          assert.deepEqual(health(), []);
          return;
        }
        assert.ok(!plane.links.includes("aegis_ptrace_access"), plane.links.join(", "));
        const victim = await PtraceVictim.start(worker, other.path);
        try {
          assert.deepEqual(await victim.inject("vm_writev", canary.path, secret), {
            attack: "ok vm_writev",
            victim: `opened ${secret}: s3cret`,
          });
        } finally {
          await victim.close();
        }
        const [warning, ...rest] = health();
        assert.deepEqual(rest, []);
        assert.match(warning ?? "", /^the ptrace guard is not enforced \(it is a BPF-LSM program/);
      });
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
);
