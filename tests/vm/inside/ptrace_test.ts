import assert from "node:assert/strict";
import { HOOK, PTRACE_OP, type RawEvent } from "../../../ffi/mod.ts";
import { cgroup2Root } from "../../../lib/kernel/cgroup.ts";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { resolvePlan } from "../../../lib/kernel/resolve.ts";
import { emptyPlan, type RuleInfo, type RuleSetPlan } from "../../../lib/policy/plan.ts";
import { drain } from "../../support/plane.ts";
import { buildPtraceWorker, PtraceVictim, runPtraceWorker } from "../../support/ptrace_worker.ts";

// The ptrace guard (bpf/process_guard.bpf.h) inside the qemu guest, where BPF-LSM loads. A uid-65534 task
// in the scope rewrites the path a same-uid victim outside the scope opens (tests/support/ptrace_worker.c),
// by PTRACE_POKEDATA, process_vm_writev and /proc/PID/mem, so that the victim opens a file the rules deny
// in the scope: shown to work without the guard, refused in enforce (the victim's open never happens) and
// let through but reported in audit.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const METHODS = [
  { method: "poke", step: "attach", op: PTRACE_OP.ATTACH, errno: "EPERM" },
  { method: "vm_writev", step: "process_vm_writev", op: PTRACE_OP.VM_WRITE, errno: "EPERM" },
  // The hook says EPERM; opening /proc/PID/mem turns any refusal of ptrace_may_access into EACCES.
  { method: "mem", step: "open", op: PTRACE_OP.PROC_OPEN, errno: "EACCES" },
] as const;
const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "secret", area: "file", action: "deny" },
  { id: "scope.ptrace", area: "exec", action: "deny" },
];

/** Removes a directory (a cgroup) that may not be there. */
function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

function ptraceEvents(plane: DataPlane): RawEvent[] {
  return drain(plane).filter((event) => event.hook === HOOK.PTRACE);
}

Deno.test({
  name: "[vm] ptrace: a task in scope cannot write a task outside it (ptrace, process_vm_writev, " +
    "/proc/PID/mem, traceme); audit reports",
  ignore: !inVm,
  fn: async () => {
    const bpffs = "/sys/fs/bpf/aegisbpf-ptrace";
    const root = cgroup2Root();
    const base = `${root}/aegisbpf-ptrace`;
    const names = ["", "/canary", "/canary/inner", "/canary/exempt", "/other"];
    const cgroup = (name: string) => `${base}${name}`;
    const rel = (name: string) => cgroup(name).slice(root.length);
    // Leftovers of an interrupted run.
    DataPlane.detach(bpffs);
    for (const name of names.toReversed()) removeIfThere(cgroup(name));
    for (const name of names) Deno.mkdirSync(cgroup(name));
    Deno.mkdirSync(bpffs, { recursive: true });
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-ptrace-" });
    Deno.chmodSync(dir, 0o755);
    const secret = `${dir}/secret`;
    Deno.writeTextFileSync(secret, "s3cret\n");
    Deno.chmodSync(secret, 0o644);
    const worker = await buildPtraceWorker(dir);
    const run = (...args: string[]) => runPtraceWorker(worker, ...args);
    let victim: PtraceVictim | undefined;
    const plane = DataPlane.open({ bpffs, areas: ["file"] });
    try {
      victim = await PtraceVictim.start(worker, cgroup("/other"));
      assert.equal(plane.status.file.mode, "enforce", `file area: ${plane.status.file.reason}`);
      assert.ok(plane.links.includes("aegis_ptrace_access"), `links: ${plane.links.join(", ")}`);
      const apply = async (mode: "audit" | "enforce", guard: boolean) => {
        const plan: Partial<RuleSetPlan> = {
          mode,
          rules: RULES,
          files: [{ ruleId: 1, path: secret }],
          scope: { include: [rel("/canary")], exempt: [rel("/canary/exempt")] },
          ...guard && { ptraceGuard: { ruleId: 2 } },
        };
        await plane.apply(resolvePlan({ ...emptyPlan(), ...plan }));
      };
      /** The attacker in `from` writes the secret's path into the victim; what each side then printed. */
      const target = victim;
      const inject = (method: string, from = "/canary") => target.inject(method, cgroup(from), secret);
      const opened = `opened ${secret}: s3cret`;
      const untouched = "opened /dev/null: ";

      // What a scope policy gave before the guard: the rules hold the task in scope, not its victims.
      await apply("enforce", false);
      for (const { method } of METHODS) {
        assert.deepEqual(
          await inject(method),
          { attack: `ok ${method}`, victim: opened },
          `${method}, no guard`,
        );
      }
      assert.deepEqual(ptraceEvents(plane), []);

      await apply("enforce", true);
      for (const { method, step, errno } of METHODS) {
        assert.deepEqual(
          await inject(method),
          { attack: `errno ${errno} (${step})`, victim: untouched },
          `${method}, enforce`,
        );
      }
      // Read access (ps, top, /proc/PID/environ) stays open: facts, not control.
      assert.deepEqual(await inject("environ"), { attack: "ok environ", victim: untouched }, "read access");
      const otherId = BigInt(Deno.statSync(cgroup("/other")).ino ?? 0);
      const denied = ptraceEvents(plane);
      assert.deepEqual(
        denied.map((e) => [e.decision, e.ruleId, e.op, e.dev, e.ino, e.uid]),
        METHODS.map(({ op }) => [0, 2, op, target.pid, otherId, 65534]),
      );
      // Into an exempt cgroup: refused as well; inside the scope, and from outside it: free.
      Deno.writeTextFileSync(`${cgroup("/canary/exempt")}/cgroup.procs`, `${target.pid}\n`);
      assert.equal((await inject("vm_writev")).attack, "errno EPERM (process_vm_writev)", "into exempt");
      Deno.writeTextFileSync(`${cgroup("/canary/inner")}/cgroup.procs`, `${target.pid}\n`);
      assert.deepEqual(
        await inject("vm_writev"),
        { attack: "ok vm_writev", victim: `errno EPERM ${secret}` },
        "a victim in the scope is held by the rules itself",
      );
      Deno.writeTextFileSync(`${cgroup("/other")}/cgroup.procs`, `${target.pid}\n`);
      assert.deepEqual(
        await inject("vm_writev", "/other"),
        { attack: "ok vm_writev", victim: opened },
        "outside",
      );
      // A child outside the scope cannot ask its parent in scope to trace it.
      assert.equal(await run("traceme", cgroup("/canary"), cgroup("/other")), "errno EPERM (traceme)");
      const more = ptraceEvents(plane).map((
        e,
      ) => [e.decision, e.op, e.dev === e.pid, e.cgroupId, e.ino, e.uid]);
      const canaryId = BigInt(Deno.statSync(cgroup("/canary")).ino ?? 0);
      // traceme: the process fields are the tracer's (the parent, in the canary), the target the child.
      assert.deepEqual(more, [
        [
          0,
          PTRACE_OP.VM_WRITE,
          false,
          canaryId,
          BigInt(Deno.statSync(cgroup("/canary/exempt")).ino ?? 0),
          65534,
        ],
        [0, PTRACE_OP.TRACEME, false, canaryId, otherId, 65534],
      ]);

      await apply("audit", true);
      for (const { method } of METHODS) {
        assert.deepEqual(
          await inject(method),
          { attack: `ok ${method}`, victim: opened },
          `${method}, audit`,
        );
      }
      assert.deepEqual(
        ptraceEvents(plane).map((e) => [e.decision, e.ruleId, e.op, e.dev]),
        METHODS.map(({ op }) => [1, 2, op, target.pid]),
      );
    } finally {
      await victim?.close();
      plane.close();
      DataPlane.detach(bpffs);
      removeIfThere(bpffs);
      Deno.removeSync(dir, { recursive: true });
      for (const name of names.toReversed()) removeIfThere(cgroup(name));
    }
  },
});
