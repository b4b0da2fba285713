/**
 * network.bind rules without a protocol on this host (cgroup/bind4 and bind6): a UDP-Lite bind to a denied
 * port fails with EPERM in enforce and goes ahead, reported, in audit, as uid 65534. SCTP never reaches
 * the cgroup bind hooks (it has a bind of its own); the VM suite proves lsm/socket_bind and
 * lsm/sctp_bind_connect refuse it.
 */
import assert from "node:assert/strict";
import { DECISION, HOOK } from "../../ffi/mod.ts";
import { compilePolicy } from "../../lib/policy/compile.ts";
import { parsePolicy } from "../../lib/policy/parse.ts";
import { resolvePlan } from "../../lib/kernel/resolve.ts";
import { buildPacketWorker, PacketWorker } from "../support/packet_worker.ts";
import { drain, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";

const PORT = 9898;
const NOBODY = 65534;
const EPERM = 1;

function policy(mode: "enforce" | "audit"): string {
  return `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: bind-protocols, version: 1 }
spec:
  mode: ${mode}
  network:
    bind:
      deny: [{ id: no-9898, port: ${PORT} }]
`;
}

rootTest(
  "[root] a bind rule without a protocol covers UDP-Lite: EPERM in enforce, reported in audit",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "aegisbpf-bindproto-" });
    try {
      const binary = await buildPacketWorker(dir);
      await withPlane({ areas: ["bind"] }, async ({ plane, cgroup }) => {
        const worker = await PacketWorker.start(binary, cgroup.path);
        try {
          const bind = async (port: number) => {
            const outcome = await worker.send({ kind: "udplite-bind", addr: "127.0.0.1", port, uid: NOBODY });
            const events = drain(plane).filter((e) => e.hook === HOOK.BIND && e.pid === outcome.pid);
            return { errno: outcome.stage === "op" ? outcome.errno : -1, events };
          };
          await plane.apply(resolvePlan(compilePolicy(parsePolicy(policy("enforce"), "enforce.yaml"))));
          drain(plane);
          const refused = await bind(PORT);
          assert.equal(refused.errno, EPERM, "UDP-Lite bind to the denied port refused");
          assert.equal(refused.events.length, 1);
          const [event] = refused.events;
          assert.deepEqual(
            [event?.decision, event?.protocol, event?.sport, event?.uid],
            [DECISION.DENY, 136, PORT, NOBODY],
          );
          assert.equal((await bind(PORT + 1)).errno, 0, "another port binds");

          await plane.apply(resolvePlan(compilePolicy(parsePolicy(policy("audit"), "audit.yaml"))));
          drain(plane);
          const audited = await bind(PORT);
          assert.equal(audited.errno, 0, "audit: the bind goes ahead");
          assert.deepEqual(audited.events.map((e) => [e.decision, e.protocol, e.uid]), [[
            DECISION.AUDIT,
            136,
            NOBODY,
          ]]);
        } finally {
          assert.equal((await worker.close()).trim(), "", "the worker reports no failure");
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
