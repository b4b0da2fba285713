/**
 * Sockets where BPF-LSM runs, inside the qemu guest (the sctp module is loaded at boot from
 * tests/vm/modules): denyPacketSockets refuses AF_XDP and socket(AF_INET, SOCK_PACKET) as well as AF_PACKET
 * (lsm/socket_create), and a bind rule without a protocol refuses SCTP bind and sctp_bindx (lsm/socket_bind,
 * lsm/sctp_bind_connect) and UDP-Lite bind (cgroup/bind4) to its port, as uid 65534. Enforce: EPERM and a
 * deny event; audit: the call succeeds and is reported. One plane and one worker for every case.
 */
import assert from "node:assert/strict";
import { DECISION, FAMILY, HOOK, type RawEvent } from "../../../ffi/mod.ts";
import { cgroup2Root } from "../../../lib/kernel/cgroup.ts";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { resolvePlan } from "../../../lib/kernel/resolve.ts";
import { compilePolicy } from "../../../lib/policy/compile.ts";
import { parsePolicy } from "../../../lib/policy/parse.ts";
import { buildPacketWorker, type PacketKind, PacketWorker } from "../../support/packet_worker.ts";
import { drain } from "../../support/plane.ts";

const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const EPERM = 1;
const PORT = 9897;
const NOBODY = 65534;

function policy(mode: "enforce" | "audit"): string {
  return `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: sockets, version: 1 }
spec:
  mode: ${mode}
  network:
    egress:
      denyPacketSockets: true
    bind:
      deny: [{ id: no-${PORT}, port: ${PORT} }]
`;
}

/** What each socket case must report: hook, family and protocol (SOCK_* type for net.socket). */
const CASES: { kind: PacketKind; hook: number; family: number; protocol: number; uid: number }[] = [
  { kind: "xdp", hook: HOOK.SOCKET, family: FAMILY.XDP, protocol: 3, uid: 0 },
  { kind: "sock-packet", hook: HOOK.SOCKET, family: FAMILY.PACKET, protocol: 10, uid: 0 },
  { kind: "sctp-bind", hook: HOOK.BIND, family: FAMILY.IPV4, protocol: 132, uid: NOBODY },
  { kind: "sctp-bindx", hook: HOOK.BIND, family: FAMILY.IPV4, protocol: 132, uid: NOBODY },
  { kind: "udplite-bind", hook: HOOK.BIND, family: FAMILY.IPV4, protocol: 136, uid: NOBODY },
];

Deno.test({
  name: "[vm] AF_XDP, SOCK_PACKET, SCTP and UDP-Lite binds: EPERM in enforce, allowed and reported in audit",
  ignore: !inVm,
  fn: async () => {
    const bpffs = "/sys/fs/bpf/sockets";
    Deno.mkdirSync(bpffs, { recursive: true });
    const plane = DataPlane.open({ bpffs, areas: ["egress", "bind"], lsm: "auto" });
    try {
      const worker = await PacketWorker.start(await buildPacketWorker(""), cgroup2Root());
      try {
        const apply = async (mode: "enforce" | "audit") => {
          await plane.apply(resolvePlan(compilePolicy(parsePolicy(policy(mode), `${mode}.yaml`))));
          drain(plane);
        };
        const attempt = async (c: (typeof CASES)[number], port = PORT) => {
          const outcome = await worker.send({ kind: c.kind, addr: "127.0.0.1", port, uid: c.uid });
          const events = drain(plane).filter((e: RawEvent) => e.pid === outcome.pid && e.hook === c.hook);
          for (const e of events) {
            assert.deepEqual([e.family, e.protocol, e.uid], [c.family, c.protocol, c.uid], c.kind);
          }
          return { stage: outcome.stage, errno: outcome.errno, decisions: events.map((e) => e.decision) };
        };
        await apply("enforce");
        for (const c of CASES) {
          const refused = await attempt(c);
          const stage = c.hook === HOOK.SOCKET ? "socket" : "op";
          assert.deepEqual(
            refused,
            { stage, errno: EPERM, decisions: [DECISION.DENY] },
            `${c.kind}: refused`,
          );
          if (c.hook === HOOK.BIND) {
            const other = await attempt(c, PORT + 1);
            assert.deepEqual(
              other,
              { stage: "op", errno: 0, decisions: [] },
              `${c.kind}: another port binds`,
            );
          }
        }
        await apply("audit");
        for (const c of CASES) {
          const audited = await attempt(c);
          assert.deepEqual(
            audited,
            { stage: "op", errno: 0, decisions: [DECISION.AUDIT] },
            `${c.kind}: audit`,
          );
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
