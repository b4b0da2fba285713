/**
 * MPTCP ADD_ADDR subflows with a scope: a client in the scope cgroup (uid 65534) connects with MPTCP to an
 * allowed address A; the server announces a denied address D (`ip mptcp endpoint add D dev veth-srv
 * signal`), and the client's kernel opens a subflow to D from a kernel worker, outside the scope. The
 * subflow is judged as its connection's owner (the MPTCP socket's cgroup and uid): in enforce no SYN to D
 * reaches the server's veth and the refusal is reported with the owner's uid and cgroup; in audit the
 * subflow goes ahead and is reported the same way. One plane and one veth pair for both cases.
 */
import assert from "node:assert/strict";
import { DECISION, HOOK } from "../../ffi/mod.ts";
import { buildMptcpPeer, runMptcpPeer } from "../support/mptcp_peer.ts";
import { VethPair } from "../support/netns.ts";
import { drain, ruleSet, withPlane } from "../support/plane.ts";
import { must, rootTest } from "../support/privileged.ts";
import { ipv4Rule } from "../support/slice.ts";

const NOBODY = 65534;
const PORT = 9896;

rootTest(
  "[root] an MPTCP subflow to an announced denied address is judged as its connection's owner",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "aegisbpf-mptcp-" });
    const pair = await VethPair.create();
    try {
      const binary = await buildMptcpPeer(dir);
      // D: a second server address on another network, announced by the server, routed by the client.
      const announced = pair.serverAddress.replace(/^198\.18\./, "198.19.");
      await must("ip", ["-n", pair.server, "addr", "add", `${announced}/32`, "dev", "veth-srv"]);
      await must("ip", ["-n", pair.client, "route", "add", `${announced}/32`, "dev", "veth-cli"]);
      for (const ns of [pair.server, pair.client]) {
        await must("ip", ["netns", "exec", ns, "sysctl", "-q", "net.mptcp.enabled=1"]);
        await must("ip", ["-n", ns, "mptcp", "limits", "set", "subflows", "1", "add_addr_accepted", "1"]);
      }
      await must("ip", [
        "-n",
        pair.server,
        "mptcp",
        "endpoint",
        "add",
        announced,
        "dev",
        "veth-srv",
        "signal",
      ]);
      await withPlane({ areas: ["egress"] }, async ({ plane, cgroup }) => {
        const cgroupId = BigInt(Deno.statSync(cgroup.path).ino!);
        const apply = async (mode: "enforce" | "audit") => {
          await plane.apply(ruleSet({
            mode,
            rules: [
              { id: "default", area: "ingress", action: "deny" },
              { id: "deny-announced", area: "egress", action: "deny" },
            ],
            egress: [ipv4Rule(`${announced}/32`, 1)],
            scope: { include: [cgroup.relativePath], exempt: [] },
          }));
          drain(plane);
        };
        const attempt = async () => {
          const outcome = await runMptcpPeer(binary, pair, cgroup.path, NOBODY, announced, PORT);
          const events = drain(plane).filter((e) =>
            e.hook === HOOK.CONNECT && e.dport === PORT && e.ruleId === 1
          );
          assert.equal(outcome.bytes, 5, "the first subflow carries the data");
          for (const event of events) {
            assert.deepEqual([event.uid, event.cgroupId], [NOBODY, cgroupId], "the owner's uid and cgroup");
          }
          return { syns: outcome.syns, decisions: [...new Set(events.map((e) => e.decision))] };
        };
        await apply("enforce");
        const refused = await attempt();
        assert.deepEqual(refused, { syns: 0, decisions: [DECISION.DENY] }, "enforce: no SYN to D, reported");
        await apply("audit");
        const audited = await attempt();
        assert.ok(audited.syns >= 1, `audit: the subflow reaches D (${audited.syns} SYNs)`);
        assert.deepEqual(audited.decisions, [DECISION.AUDIT], "audit: reported");
      });
    } finally {
      await pair.remove();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
