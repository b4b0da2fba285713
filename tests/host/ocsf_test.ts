/**
 * `aegisbpf run --log-format ocsf` against the real kernel: the agent in a test cgroup with an egress, bind,
 * file and exec policy, decisions provoked from the cgroup, and every line it prints checked against the
 * required attributes of its OCSF class (docs/schema/ocsf-classes.json), in audit and in enforce. The event
 * types that only BPF-LSM hooks make are checked from a real run in the VM (tests/vm/inside/ocsf_vm_test.ts),
 * and every type from records decoded as the agent decodes them (lib/agent/event_ocsf_test.ts).
 */
import assert from "node:assert/strict";
import { AgentRun, type Event } from "../support/agent_run.ts";
import {
  BIND_PORT,
  connect,
  everyAreaPolicy,
  type Host,
  NET,
  policy,
  TCP_PORT,
  UDP_PORT,
  withHost,
  writePolicy,
} from "../support/agent_host.ts";
import { rootTest } from "../support/privileged.ts";
import { ocsfProblems } from "../support/ocsf.ts";

const code = (type: string, rule?: string) => (event: Event) =>
  event.metadata?.event_code === type && (rule === undefined || event.unmapped?.rule?.id === rule);

function spawnOcsf(host: Host, args: string[]): AgentRun {
  return AgentRun.spawn(host, args, { env: host.env, format: "ocsf" });
}

/** What every decision line says, whatever its class. */
function assertDecision(event: Event, denied: boolean): void {
  assert.deepEqual(ocsfProblems(event), []);
  assert.equal(event.device.hostname, Deno.hostname());
  assert.deepEqual(
    [event.action_id, event.disposition_id, event.status_id],
    denied ? [2, 2, 2] : [3, 15, 1],
    `${event.metadata.event_code}: ${denied ? "Denied/Blocked" : "Observed/Detected, would be blocked"}`,
  );
  assert.equal(event.unmapped.decision, denied ? "deny" : "audit");
  assert.equal(event.unmapped.policy.name, "agent-test");
  assert.match(event.unmapped.policy.sha256, /^[0-9a-f]{64}$/);
  assert.equal(typeof event.actor.process.pid, "number");
  assert.equal(typeof event.actor.process.name, "string");
  assert.ok(event.observables.some((o: Event) => o.type_id === 1 && o.value === Deno.hostname()));
}

rootTest(
  "[root] run --log-format ocsf --audit: connect, sendmsg, bind, file open and exec are OCSF events with every attribute their class requires",
  async () => {
    await withHost(async (host) => {
      const { secret, tool, file } = everyAreaPolicy(host, ["T1552.001"]);
      await using agent = spawnOcsf(host, ["--audit", "--policy", file]);
      const start = await agent.waitFor(code("agent.start"), 30_000);
      assert.deepEqual([start.class_uid, start.activity_id, start.type_uid], [6002, 3, 600203]);
      assert.deepEqual(ocsfProblems(start), []);
      const applied = await agent.waitFor(code("policy.applied"), 30_000);
      assert.deepEqual([applied.class_uid, applied.activity_id], [6002, 8]);

      assert.equal(await connect(host), "allowed", "audit lets the connect through");
      assert.equal(await host.cgroup.probe("udp-sendto", "127.0.0.3", String(UDP_PORT)), "sent");
      assert.equal(await host.cgroup.probe("bind", "tcp", String(BIND_PORT)), "bound");
      assert.equal((await host.cgroup.runBash(`cat '${secret}'`)).stdout, "s3cret\n");
      assert.equal((await host.cgroup.runBash(`'${tool}'`)).code, 0);

      const connected = await agent.waitFor(code("net.connect", "tcp-lo2"));
      assertDecision(connected, false);
      assert.deepEqual([connected.class_uid, connected.activity_id], [4001, 1], "an audited connect is Open");
      assert.deepEqual(connected.dst_endpoint, { ip: "127.0.0.2", port: TCP_PORT });
      assert.equal(connected.connection_info.protocol_name, "tcp");
      const sent = await agent.waitFor(code("net.sendmsg", "udp-lo3"));
      assertDecision(sent, false);
      assert.deepEqual(sent.dst_endpoint, { ip: "127.0.0.3", port: UDP_PORT });
      const bound = await agent.waitFor(code("net.bind", "bind-port"));
      assertDecision(bound, false);
      assert.deepEqual([bound.class_uid, bound.activity_id], [4001, 7]);
      assert.equal(bound.src_endpoint.port, BIND_PORT);
      const opened = await agent.waitFor(code("file.open", "secret-file"));
      assertDecision(opened, false);
      assert.deepEqual([opened.class_uid, opened.activity_id], [1001, 14]);
      assert.equal(opened.file.path, secret);
      assert.equal(opened.actor.process.name, "cat");
      assert.deepEqual(opened.attacks, [{ technique: { uid: "T1552.001" }, version: "MITRE ATT&CK" }]);
      const ran = await agent.waitFor(code("exec", "tool-exec"));
      assertDecision(ran, false);
      assert.deepEqual([ran.class_uid, ran.activity_id], [1007, 1]);
      assert.equal(ran.process.file.path, tool);

      agent.kill("SIGTERM");
      const { code: exit, stderr } = await agent.exit();
      assert.equal(exit, 0, stderr);
      const stop = agent.events.at(-1)!;
      assert.deepEqual([stop.metadata.event_code, stop.class_uid, stop.activity_id], ["agent.stop", 6002, 4]);
      for (const event of agent.events) assert.deepEqual(ocsfProblems(event), [], JSON.stringify(event));
      // The event log keeps the native lines: events and explain read them; events --ocsf maps them.
      const logged = Deno.readTextFileSync(`${host.stateDir}/events.jsonl`).trim().split("\n");
      assert.equal(logged.length, agent.events.length);
      assert.equal(JSON.parse(logged[0]!).type, "agent.start");
    });
  },
);

rootTest(
  "[root] run --log-format ocsf --enforce: a denied connect is Refuse, Denied and Blocked, and the caller got EPERM",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET));
      await using agent = spawnOcsf(host, ["--enforce", "--policy", file]);
      await agent.waitFor(code("policy.applied"), 30_000);
      assert.equal(await connect(host), "EPERM");
      assert.equal(await host.cgroup.probe("bind", "tcp", String(BIND_PORT)), "EPERM");
      const refused = await agent.waitFor(code("net.connect", "tcp-lo2"));
      assertDecision(refused, true);
      assert.deepEqual([refused.class_uid, refused.activity_id, refused.type_uid], [4001, 5, 400105]);
      assert.equal(refused.unmapped.mode, "enforce");
      const bound = await agent.waitFor(code("net.bind", "bind-port"));
      assertDecision(bound, true);
      for (const event of agent.events) assert.deepEqual(ocsfProblems(event), [], JSON.stringify(event));
    });
  },
);
