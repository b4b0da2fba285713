/**
 * Egress where BPF-LSM runs, inside the qemu guest (tests/vm/harness.ts; the sctp module is loaded at
 * boot from tests/vm/modules): SCTP connect, sctp_connectx and one-to-many sendto to a denied peer fail
 * with EPERM (lsm/sctp_bind_connect) and are reported, and the packet backstop alone (BPF-LSM off) still
 * keeps their INIT from the peer; AF_PACKET sockets are refused with denyPacketSockets; a connection made
 * before apply is closed on 6.5+ and listed on older kernels.
 */
import assert from "node:assert/strict";
import { HOOK, MODE, type RawEvent } from "../../../ffi/mod.ts";
import { cgroup2Root } from "../../../lib/kernel/cgroup.ts";
import { kernelCanCloseSockets, sweepConnections } from "../../../lib/kernel/connections.ts";
import type { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { resolvePlan } from "../../../lib/kernel/resolve.ts";
import { emptyPlan, type RuleSetPlan } from "../../../lib/policy/plan.ts";
import { buildPacketWorker, type PacketKind, PacketWorker } from "../../support/packet_worker.ts";
import { drain } from "../../support/plane.ts";
import { SharedPlane } from "../../support/shared_plane.ts";
import { exists } from "../../../lib/kernel/pin_dir.ts";
import { ipv4Rule } from "../../support/slice.ts";

const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const EPERM = 1;
const PORT = 9899;
const RULES = [
  { id: "default", area: "ingress" as const, action: "deny" as const },
  { id: "deny-loopback2", area: "egress" as const, action: "deny" as const },
  { id: "network.egress.denyPacketSockets", area: "egress" as const, action: "deny" as const },
];

type Fixture = {
  plane: DataPlane;
  worker: PacketWorker;
  apply: (parts: Partial<RuleSetPlan>) => Promise<void>;
};

/** One shared plane per BPF-LSM setting (tests/support/shared_plane.ts): each loads its own program set. */
const shared = { auto: new SharedPlane("net-lsm-auto"), off: new SharedPlane("net-lsm-off") };

function vmTest(name: string, lsm: "auto" | "off", fn: (fixture: Fixture) => Promise<void>): void {
  Deno.test({
    name,
    ignore: !inVm,
    fn: async () => {
      const plane = shared[lsm].open({ areas: ["egress"], lsm });
      try {
        const worker = await PacketWorker.start(await buildPacketWorker(""), cgroup2Root());
        try {
          const apply = async (parts: Partial<RuleSetPlan>) => {
            await plane.apply(resolvePlan({
              ...emptyPlan(),
              mode: "enforce",
              rules: RULES,
              egress: [ipv4Rule("127.0.0.2/32", 1)],
              ...parts,
            }));
            drain(plane);
          };
          await fn({ plane, worker, apply });
        } finally {
          assert.equal((await worker.close()).trim(), "", "the worker reports no failure");
        }
      } finally {
        await shared[lsm].release(plane);
      }
    },
  });
}

const SCTP: PacketKind[] = ["sctp-connect", "sctp-connectx", "sctp-sendto"];

function eventsOf(plane: DataPlane, pid: number, hook: number): RawEvent[] {
  return drain(plane).filter((event) => event.pid === pid && event.hook === hook);
}

vmTest(
  "[vm] SCTP connect, connectx and one-to-many sendto to a denied peer fail with EPERM",
  "auto",
  async (f) => {
    await f.apply({});
    for (const kind of SCTP) {
      const denied = await f.worker.send({ kind, addr: "127.0.0.2", port: PORT });
      assert.deepEqual([denied.stage, denied.errno, denied.delivered], ["op", EPERM, false], kind);
      const [event, ...rest] = eventsOf(f.plane, denied.pid, HOOK.CONNECT);
      assert.equal(rest.length, 0, `${kind}: one event`);
      assert.equal(event?.protocol, 132);
      assert.equal(event?.ruleId, 1);
      assert.equal(event?.dport, PORT);
      const allowed = await f.worker.send({ kind, addr: "127.0.0.1", port: PORT });
      assert.deepEqual([allowed.errno, allowed.delivered], [0, true], `${kind} to an allowed peer`);
    }
  },
);

vmTest(
  "[vm] sctp_connectx with a denied peer address after an allowed one fails with EPERM",
  "auto",
  async (f) => {
    await f.apply({});
    const outcome = await f.worker.send({ kind: "sctp-connectx-second", addr: "127.0.0.2", port: PORT });
    assert.deepEqual([outcome.stage, outcome.errno], ["op", EPERM]);
    const events = eventsOf(f.plane, outcome.pid, HOOK.CONNECT);
    assert.equal(events.length, 1, "the denied address is reported");
    assert.equal(events[0]?.dport, PORT);
  },
);

vmTest("[vm] SCTP to a denied peer goes ahead and is reported in audit", "auto", async (f) => {
  await f.apply({ mode: "audit" });
  for (const kind of SCTP) {
    const outcome = await f.worker.send({ kind, addr: "127.0.0.2", port: PORT });
    assert.deepEqual([outcome.errno, outcome.delivered], [0, true], kind);
    const events = eventsOf(f.plane, outcome.pid, HOOK.CONNECT);
    assert.ok(events.length >= 1, `${kind}: reported`);
    assert.ok(events.every((e) => e.mode === MODE.AUDIT && e.ruleId === 1), kind);
  }
});

vmTest("[vm] without BPF-LSM the packet backstop keeps SCTP's INIT from a denied peer", "off", async (f) => {
  await f.apply({});
  for (const kind of SCTP) {
    const outcome = await f.worker.send({ kind, addr: "127.0.0.2", port: PORT });
    assert.equal(outcome.delivered, false, `${kind}: no association`);
    assert.ok(eventsOf(f.plane, outcome.pid, HOOK.PACKET).length >= 1, `${kind}: reported by the backstop`);
  }
});

vmTest("[vm] denyPacketSockets refuses AF_PACKET sockets; off, they open", "auto", async (f) => {
  await f.apply({ denyPacketSockets: { ruleId: 2 } });
  const refused = await f.worker.send({ kind: "packet", addr: "0.0.0.0" });
  assert.deepEqual([refused.stage, refused.errno], ["socket", EPERM]);
  const [event] = eventsOf(f.plane, refused.pid, HOOK.SOCKET);
  assert.equal(event?.ruleId, 2);
  await f.apply({});
  const opened = await f.worker.send({ kind: "packet", addr: "0.0.0.0" });
  assert.equal(opened.stage, "op");
});

vmTest(
  "[vm] a connection made before apply is closed where the kernel can, else listed",
  "auto",
  async (f) => {
    const listener = Deno.listen({ hostname: "127.0.0.2", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const accepted = listener.accept();
    const client = await Deno.connect({ hostname: "127.0.0.2", port });
    const server = await accepted;
    try {
      await f.apply({});
      const sweep = sweepConnections(f.plane.pinDir);
      const found = sweep.connections.filter((c) => c.protocol === "tcp" && c.dport === port);
      assert.equal(
        found.length,
        1,
        sweep.connections.map((c) => `${c.protocol} ${c.daddr}:${c.dport}`).join(", "),
      );
      assert.equal(found[0]?.closed, kernelCanCloseSockets());
      assert.equal(sweep.canClose, kernelCanCloseSockets());
      console.log(
        `kernel ${Deno.osRelease()}: bpf_sock_destroy ${sweep.canClose ? "closes" : "absent: listed only"}`,
      );
    } finally {
      client.close();
      server.close();
      listener.close();
    }
  },
);

// Last: the shared planes go, with everything they pinned and attached.
Deno.test({
  name: "[vm] the egress tests' shared data planes detach: nothing of them stays pinned",
  ignore: !inVm,
  fn: () => {
    for (const plane of Object.values(shared)) {
      plane.detach();
      assert.equal(exists(plane.bpffs), false);
    }
  },
});
