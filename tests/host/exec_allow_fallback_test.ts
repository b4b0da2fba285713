import assert from "node:assert/strict";
import { EXEC_REASON, HOOK } from "../../ffi/mod.ts";
import { execFileName } from "../../lib/kernel/events.ts";
import { sha256OfFile } from "../../lib/kernel/resolve.ts";
import type { RuleInfo } from "../../lib/policy/plan.ts";
import { TestCgroup } from "../support/cgroup.ts";
import { drain, ruleSet, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";

const AUDIT = 1;
const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "exec.default", area: "exec", action: "deny" },
  { id: "system", area: "exec", action: "allow" },
  { id: "hashed", area: "exec", action: "allow" },
];

// The exec allowlist where BPF-LSM does not load (forced here with lsm: "off", so the test means the same
// on every kernel): audit-only, through the exec tracepoint. It reports the program an exec ends up running
// when exec.allow does not hold it (untrusted) or its sha256 entry's file changed (hash-mismatch); what is
// mapped executable later (a library) it cannot see. Scoped to a test cgroup: other execs on the host are
// not in scope.
rootTest(
  "[root] exec allowlist fallback: untrusted and hash-mismatch execs are reported, never refused; libraries are unseen",
  async () => {
    const probe = new URL("../../bpf/build/fixtures/file_guard_probe", import.meta.url).pathname;
    const library = new URL("../../bpf/build/fixtures/libprobe.so", import.meta.url).pathname;
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-allow-fallback-" });
    const cgroup = TestCgroup.create();
    try {
      const tool = `${dir}/tool`;
      Deno.copyFileSync(Deno.realPathSync("/bin/true"), tool);
      Deno.chmodSync(tool, 0o755);
      const hashed = `${dir}/hashed`;
      Deno.copyFileSync(Deno.realPathSync("/bin/true"), hashed);
      Deno.chmodSync(hashed, 0o755);
      const libraryCopy = `${dir}/libcopy.so`;
      Deno.copyFileSync(library, libraryCopy);
      await withPlane({ areas: ["exec"], lsm: "off" }, async ({ plane }) => {
        assert.equal(plane.status.exec.mode, "audit-only");
        assert.match(plane.status.exec.reason ?? "", /disabled by configuration/);
        await plane.apply(ruleSet({
          mode: "enforce",
          rules: RULES,
          scope: { include: [cgroup.relativePath], exempt: [] },
          execDefaultDeny: { ruleId: 1 },
          execAllow: [
            { ruleId: 2, path: Deno.realPathSync("/bin/bash") },
            { ruleId: 2, path: probe },
            { ruleId: 3, path: hashed, sha256: sha256OfFile(hashed) },
          ],
        }));
        drain(plane);

        assert.equal((await cgroup.runBash(`exec '${tool}'`)).code, 0, "audit-only: the untrusted file runs");
        assert.equal((await cgroup.runBash(`exec '${hashed}'`)).code, 0, "the hashed file runs");
        Deno.writeFileSync(hashed, new Uint8Array([0]), { append: true });
        assert.equal((await cgroup.runBash(`exec '${hashed}'`)).code, 0, "audit-only: changed, it runs");
        const loaded = await cgroup.runBash(`exec '${probe}' dlopen '${libraryCopy}'`);
        assert.equal(loaded.stdout.trim(), "ok loaded", "audit-only: the copied library loads");
        assert.equal((await new Deno.Command(tool).output()).code, 0, "out of scope");

        const events = drain(plane).filter((event) => event.hook === HOOK.EXEC);
        const ino = (path: string) => BigInt(Deno.statSync(path).ino!);
        const untrusted = events.filter((event) => event.ino === ino(tool));
        assert.equal(untrusted.length, 1, "the exec in scope, once; the one out of scope not at all");
        assert.deepEqual(
          [untrusted[0]!.decision, untrusted[0]!.op, untrusted[0]!.ruleId, execFileName(untrusted[0]!)],
          [AUDIT, EXEC_REASON.UNTRUSTED, 1, "tool"],
        );
        const mismatch = events.filter((event) => event.ino === ino(hashed));
        assert.deepEqual(
          mismatch.map((event) => [event.decision, event.op, event.ruleId, execFileName(event)]),
          [[AUDIT, EXEC_REASON.HASH_MISMATCH, 3, "hashed"]],
          "reported once: after the change, not before",
        );
        assert.equal(
          events.filter((event) => event.ino === ino(libraryCopy)).length,
          0,
          "a mapping is unseen",
        );
        assert.equal(events.length, 2, "bash and the probe are allowed: nothing else");
        const counters = plane.counters().decisions;
        assert.equal(counters.exec.deny, 0n, "nothing is denied");
      });
    } finally {
      cgroup.remove();
      Deno.removeSync(dir, { recursive: true });
    }
  },
);
