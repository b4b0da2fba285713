/**
 * Rules that name a program on the BPF-LSM socket hooks, inside the qemu guest: a bind rule with `exe`
 * refuses that program's SCTP bind (lsm/socket_bind, which calls the subject lookup of
 * bpf/task_subject.bpf.h) and lets another program's through; in audit it is allowed and reported, and
 * the event names the program's inode. The socket worker runs each case in a fork of itself.
 */
import assert from "node:assert/strict";
import { DECISION, HOOK, type RawEvent } from "../../../ffi/mod.ts";
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
