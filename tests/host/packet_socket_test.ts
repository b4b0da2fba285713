/**
 * network.egress.denyPacketSockets on this host: BPF-LSM programs cannot load here, so the switch is
 * reported (audit) by the sys_enter_socket tracepoint and AF_PACKET, AF_XDP and socket(AF_INET,
 * SOCK_PACKET) sockets still open; the VM suite proves the refusal (lsm/socket_create). With the switch off
 * nothing is reported.
 */
import assert from "node:assert/strict";
import { FAMILY, HOOK } from "../../ffi/mod.ts";
import { probeLsm } from "../../lib/kernel/load.ts";
import type { RuleInfo } from "../../lib/policy/plan.ts";
import { buildPacketWorker, type PacketKind, PacketWorker } from "../support/packet_worker.ts";
import { drain, ruleSet, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";

const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "network.egress.denyPacketSockets", area: "egress", action: "deny" },
];

async function withWorker(
  denyPacketSockets: boolean,
  fn: (open: (kind?: PacketKind) => Promise<{ ok: boolean; events: number[] }>) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-afpacket-" });
  try {
    const binary = await buildPacketWorker(dir);
    await withPlane({ areas: ["egress"] }, async ({ plane, cgroup }) => {
      await plane.apply(ruleSet({
        mode: "enforce",
        rules: RULES,
        ...denyPacketSockets && { denyPacketSockets: { ruleId: 1 } },
      }));
      const worker = await PacketWorker.start(binary, cgroup.path);
      try {
        await fn(async (kind = "packet") => {
          const outcome = await worker.send({ kind, addr: "0.0.0.0" });
          const events = drain(plane).filter((event) =>
            event.hook === HOOK.SOCKET && event.pid === outcome.pid
          );
          for (const event of events) {
            assert.equal(event.family, kind === "xdp" ? FAMILY.XDP : FAMILY.PACKET, kind);
            assert.equal(event.protocol, kind === "sock-packet" ? 10 : 3, `${kind}: SOCK_PACKET or SOCK_RAW`);
            assert.equal(event.ruleId, 1);
          }
          return { ok: outcome.stage === "op", events: events.map((event) => event.decision) };
        });
      } finally {
        await worker.close();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

rootTest(
  "[root] denyPacketSockets: an AF_PACKET socket is reported where BPF-LSM cannot refuse it",
  async () => {
    if (probeLsm().ok) return; // the VM suite covers kernels that load BPF-LSM
    await withWorker(true, async (open) => {
      assert.deepEqual(await open(), { ok: true, events: [1] }, "opened, reported as audit (would deny)");
      assert.deepEqual(await open("xdp"), { ok: true, events: [1] }, "AF_XDP: opened, reported");
      assert.deepEqual(await open("sock-packet"), { ok: true, events: [1] }, "SOCK_PACKET: opened, reported");
    });
  },
);

rootTest("[root] denyPacketSockets off: AF_PACKET sockets open and nothing is reported", async () => {
  await withWorker(false, async (open) => {
    assert.deepEqual(await open(), { ok: true, events: [] });
    assert.deepEqual(await open("xdp"), { ok: true, events: [] });
    assert.deepEqual(await open("sock-packet"), { ok: true, events: [] });
  });
});
