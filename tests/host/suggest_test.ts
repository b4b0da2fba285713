/**
 * `policy suggest` from a real agent's audit log: the agent (scoped to a test cgroup, in audit, with an
 * egress default of deny) records what the cgroup sends; the suggested candidate, applied in enforce, lets
 * the same sends through and still denies a destination the log never showed. A rule's tags reach its
 * events. Own bpffs mount, state directory and cgroup; everything detached in `finally`.
 */
import assert from "node:assert/strict";
import { aegisbpf } from "../cli/cli.ts";
import type { Event } from "../support/agent_run.ts";
import { policy, spawn, TCP_PORT, UDP_PORT, withHost, writePolicy } from "../support/agent_host.ts";
import { rootTest } from "../support/privileged.ts";
import { assertMatchesSchema } from "../support/schema.ts";

/** TEST-NET-1 addresses: never routed, so a datagram to them goes nowhere. */
const SEEN = "192.0.2.61";
const UNSEEN = "192.0.2.62";

rootTest(
  "[root] policy suggest from the agent's audit log: the candidate in enforce lets the recorded sends through and denies a new destination; tags reach events",
  async () => {
    await withHost(async (host) => {
      const body = `  network:\n    egress:\n      default: deny\n      deny:\n` +
        `        - { id: tagged, cidr: 127.0.0.2/32, ports: [${TCP_PORT}], protocol: tcp, tags: [T1105, test] }\n`;
      const file = writePolicy(host, "p.yaml", policy(host, body, { mode: "audit" }));
      {
        await using agent = spawn(host, ["--policy", file]);
        await agent.ready();
        assert.equal(await host.cgroup.probe("udp-sendto", SEEN, String(UDP_PORT)), "sent");
        assert.notEqual(await host.cgroup.connect("127.0.0.2", TCP_PORT), "EPERM", "audit lets it through");
        const isRule = (rule: string) => (event: Event) => event.rule === rule;
        const sent = await agent.waitFor(isRule("network.egress.default"));
        assert.equal(sent.decision, "audit");
        assert.equal(sent.net.daddr, SEEN);
        assert.equal(sent.tags, undefined, "a rule without tags gives events without");
        const tagged = await agent.waitFor(isRule("tagged"));
        assert.deepEqual(tagged.tags, ["T1105", "test"]);
        assertMatchesSchema("event.schema.json", tagged);
        agent.kill("SIGTERM");
        assert.equal((await agent.exit()).code, 0);
      }

      const suggested = await aegisbpf([
        "policy",
        "suggest",
        "--from",
        file,
        "--output",
        `${host.dir}/c.yaml`,
      ], {
        env: host.env,
      });
      assert.equal(suggested.code, 0, suggested.stderr);
      assert.match(suggested.stderr, /not suggested: net\.connect under rule "tagged"/);
      const candidate = Deno.readTextFileSync(`${host.dir}/c.yaml`);
      assert.match(
        candidate,
        new RegExp(`- cidr: ${SEEN.replaceAll(".", "\\.")}/32\\n\\s+port: ${UDP_PORT}`),
      );
      const enforced = candidate.replace("mode: audit", "mode: enforce");
      assert.match(enforced, /version: 2\n/, "suggest raised the version of the policy it added to");
      Deno.writeTextFileSync(`${host.dir}/c.yaml`, enforced);
      const lint = await aegisbpf(["policy", "lint", `${host.dir}/c.yaml`], { env: host.env });
      assert.equal(lint.code, 0, lint.stdout + lint.stderr);
      const applied = await aegisbpf(["policy", "apply", `${host.dir}/c.yaml`], { env: host.env });
      assert.equal(applied.code, 0, applied.stderr);

      assert.equal(
        await host.cgroup.probe("udp-sendto", SEEN, String(UDP_PORT)),
        "sent",
        "what ran still runs",
      );
      assert.equal(
        await host.cgroup.probe("udp-sendto", UNSEEN, String(UDP_PORT)),
        "EPERM",
        "a new one is not",
      );
      assert.equal(await host.cgroup.connect("127.0.0.2", TCP_PORT), "EPERM", "the deny rule stays");
    });
  },
);
