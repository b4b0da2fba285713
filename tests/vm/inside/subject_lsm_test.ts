/**
 * Rules that name a program on the BPF-LSM socket hooks, inside the qemu guest: a bind rule with `exe`
 * refuses that program's SCTP bind (lsm/socket_bind, which calls the subject lookup of
 * bpf/task_subject.bpf.h) and lets another program's through; in audit it is allowed and reported, and
 * the event names the program's inode. The socket worker runs each case in a fork of itself.
 */
import assert from "node:assert/strict";
import { DECISION, EVENT, HOOK, type RawEvent } from "../../../ffi/mod.ts";
import { cString, lastErrno, libc as ffiLibc } from "../../../ffi/libbpf.ts";
import { cgroup2Root } from "../../../lib/kernel/cgroup.ts";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { resolvePlan } from "../../../lib/kernel/resolve.ts";
import { compilePolicy } from "../../../lib/policy/compile.ts";
import { parsePolicy } from "../../../lib/policy/parse.ts";
import { buildPacketWorker, PacketWorker } from "../../support/packet_worker.ts";
import { drain } from "../../support/plane.ts";

const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const EPERM = 1;
const PORT = 9801;

function policy(mode: "enforce" | "audit", worker: string): string {
  return `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: subjects, version: 1 }
spec:
  mode: ${mode}
  network:
    bind:
      deny:
        - { id: worker-${PORT}, port: ${PORT}, exe: ${worker} }
        - { id: deno-${PORT + 1}, port: ${PORT + 1}, exe: ${Deno.execPath()} }
`;
}

Deno.test({
  name: "[vm] a bind rule with exe refuses that program's SCTP bind and no other's, in enforce and audit",
  ignore: !inVm,
  fn: async () => {
    const bpffs = "/sys/fs/bpf/subjects";
    Deno.mkdirSync(bpffs, { recursive: true });
    const plane = DataPlane.open({ bpffs, areas: ["egress", "bind"], lsm: "auto" });
    try {
      const binary = await buildPacketWorker("");
      const worker = await PacketWorker.start(binary, cgroup2Root());
      try {
        const attempt = async (port: number) => {
          const outcome = await worker.send({ kind: "sctp-bind", addr: "127.0.0.1", port, uid: 0 });
          const events = drain(plane).filter((e: RawEvent) => e.pid === outcome.pid && e.hook === HOOK.BIND);
          return { errno: outcome.errno, events };
        };
        for (const mode of ["enforce", "audit"] as const) {
          await plane.apply(resolvePlan(compilePolicy(parsePolicy(policy(mode, binary), `${mode}.yaml`))));
          drain(plane);
          const own = await attempt(PORT);
          assert.equal(own.errno, mode === "enforce" ? EPERM : 0, `${mode}: the worker's bind`);
          assert.deepEqual(own.events.map((e) => [e.decision, e.ruleId]), [
            [mode === "enforce" ? DECISION.DENY : DECISION.AUDIT, 1],
          ]);
          assert.equal(own.events[0]?.ino, BigInt(Deno.statSync(binary).ino!), "the event names the worker");
          const other = await attempt(PORT + 1);
          assert.deepEqual([other.errno, other.events.length], [0, 0], `${mode}: a rule for deno only`);
        }
      } finally {
        assert.equal((await worker.close()).trim(), "", "the worker reports no failure");
      }
    } finally {
      plane.close();
      DataPlane.detach(bpffs);
      Deno.removeSync(bpffs);
    }
  },
});

const PR_SET_NAME = 15;
const PR_SET_MM = 35;
const PR_SET_MM_EXE_FILE = 13;
const PR_SET_MM_MAP = 14;
const EBUSY = 16;

Deno.test({
  name: "[vm] while rules name programs, a task in scope cannot change its executable (prctl PR_SET_MM): " +
    "refused in enforce, reported in audit, and other prctls still work",
  ignore: !inVm,
  fn: async () => {
    const libc = Deno.dlopen("libc.so.6", {
      prctl: { parameters: ["i32", "usize", "usize", "usize", "usize"], result: "i32" },
    });
    // The result and errno of prctl(option, arg2, arg3, 0, 0); errno 0 on success.
    const prctl = (option: number, arg2: number | bigint, arg3: number | bigint) => {
      const result = libc.symbols.prctl(option, BigInt(arg2), BigInt(arg3), 0n, 0n);
      return result === -1 ? lastErrno() : 0;
    };
    const bpffs = "/sys/fs/bpf/identity";
    Deno.mkdirSync(bpffs, { recursive: true });
    const plane = DataPlane.open({ bpffs, areas: ["egress", "bind"], lsm: "auto" });
    const fd = ffiLibc().open(cString("/bin/busybox"), 0);
    assert.ok(fd >= 0, "a descriptor of another executable");
    try {
      const self = BigInt(Deno.statSync(Deno.execPath()).ino!);
      const ownEvents = () =>
        drain(plane).filter((e: RawEvent) => e.pid === Deno.pid && e.hook === HOOK.IDENTITY);
      // Without the guard the kernel answers itself: EBUSY, this process's executable is still mapped (the
      // kernel never lets a mapped executable be replaced, so this test cannot change its own).
      const plain = compilePolicy(parsePolicy(
        `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: plain, version: 1 }\nspec:\n  mode: enforce\n` +
          `  network:\n    bind:\n      deny:\n        - { port: ${PORT} }\n`,
        "plain.yaml",
      ));
      assert.equal(plain.identityGuard, undefined, "no exe rule, no guard");
      await plane.apply(resolvePlan(plain));
      drain(plane);
      assert.equal(prctl(PR_SET_MM, PR_SET_MM_EXE_FILE, fd), EBUSY);
      assert.deepEqual(ownEvents(), [], "no guard without exe rules");
      for (const mode of ["enforce", "audit"] as const) {
        const plan = compilePolicy(parsePolicy(policy(mode, "/bin/busybox"), `${mode}.yaml`));
        const ruleId = plan.identityGuard?.ruleId;
        assert.ok(ruleId !== undefined, "exe rules bring the guard");
        assert.equal(plan.rules[ruleId]?.id, "exe.identity");
        await plane.apply(resolvePlan(plan));
        drain(plane);
        const refused = mode === "enforce" ? EPERM : EBUSY;
        assert.equal(prctl(PR_SET_MM, PR_SET_MM_EXE_FILE, fd), refused, `${mode}: PR_SET_MM_EXE_FILE`);
        // PR_SET_MM_MAP with no map: refused before the kernel reads it in enforce, EFAULT-or-EINVAL after.
        const mapErrno = prctl(PR_SET_MM, PR_SET_MM_MAP, 0);
        if (mode === "enforce") assert.equal(mapErrno, EPERM, "enforce: PR_SET_MM_MAP");
        else assert.notEqual(mapErrno, EPERM, "audit: PR_SET_MM_MAP reaches the kernel");
        const events = ownEvents();
        const decision = mode === "enforce" ? DECISION.DENY : DECISION.AUDIT;
        assert.deepEqual(events.map((e) => [e.decision, e.ruleId, e.op]), [
          [decision, ruleId, PR_SET_MM_EXE_FILE],
          [decision, ruleId, PR_SET_MM_MAP],
        ]);
        assert.ok(events.every((e) => (e.flags & EVENT.EXE) !== 0 && e.ino === self), "the events name deno");
        // Every other prctl still reaches the kernel and does what it says.
        const before = Deno.readTextFileSync("/proc/thread-self/comm").trim();
        const name = new TextEncoder().encode("aegis-prctl\0");
        assert.equal(prctl(PR_SET_NAME, Deno.UnsafePointer.value(Deno.UnsafePointer.of(name)), 0), 0);
        assert.equal(Deno.readTextFileSync("/proc/thread-self/comm").trim(), "aegis-prctl");
        prctl(
          PR_SET_NAME,
          Deno.UnsafePointer.value(Deno.UnsafePointer.of(new TextEncoder().encode(`${before}\0`))),
          0,
        );
        assert.deepEqual(ownEvents(), [], `${mode}: PR_SET_NAME is not an identity change`);
      }
    } finally {
      ffiLibc().close(fd);
      plane.close();
      DataPlane.detach(bpffs);
      Deno.removeSync(bpffs);
      libc.close();
    }
  },
});
