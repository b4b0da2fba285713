/**
 * Expiring exceptions through a real agent's local API (`run --api unix:PATH`), driven with curl: added,
 * listed and counted everywhere, kept across a SIGHUP reload (the agent's own apply), named in the agent's
 * event stream, and removed, with the deny back at once.
 */
import assert from "node:assert/strict";
import { curl, exists } from "../support/api_client.ts";
import {
  connect,
  NET,
  policy,
  spawn,
  TCP_PORT,
  withHost,
  within,
  writePolicy,
} from "../support/agent_host.ts";
import { rootTest } from "../support/privileged.ts";

rootTest(
  "[root] run --api: an exception added through the API lets a denied connect through until DELETE",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "policy.yaml", policy(host, NET));
      const socket = `${host.dir}/api.sock`;
      await using agent = spawn(host, ["--policy", file, "--api", `unix:${socket}`]);
      await agent.ready();
      for (let i = 0; i < 200 && !(await exists(socket)); i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(await connect(host), "EPERM", "denied before");

      const body = JSON.stringify({
        allow: `egress:127.0.0.2:${TCP_PORT}`,
        ttl: "10m",
        reason: "INC-3 api",
        ticket: "CHG-3",
      });
      const added = await curl(socket, ["-X", "POST", "-d", body, "http://aegisbpf/v1/exceptions"]);
      assert.equal(added.status, 201, added.body);
      const id = JSON.parse(added.body).id as number;
      assert.equal(await connect(host), "allowed", "allowed with the exception");
      const event = await agent.waitFor((e) => e.type === "net.connect" && e.exception === id);
      assert.equal(event.decision, "audit");
      assert.equal(event.rule, "tcp-lo2");

      const listed = JSON.parse((await curl(socket, ["http://aegisbpf/v1/exceptions"])).body);
      assert.deepEqual(listed.map((x: { id: number; state: string }) => [x.id, x.state]), [[id, "active"]]);
      const status = JSON.parse((await curl(socket, ["http://aegisbpf/v1/status"])).body);
      assert.equal(status.exceptions.active, 1);
      const metrics = (await curl(socket, ["http://aegisbpf/metrics"])).body;
      assert.match(metrics, /^aegisbpf_exceptions\{kind="egress"\} 1$/m);

      // The agent's own apply of a new version (SIGHUP) flips the generation: the exception stays.
      writePolicy(host, "policy.yaml", policy(host, NET, { version: 2 }));
      const applied = agent.events.length;
      agent.kill("SIGHUP");
      const flip = await agent.waitFor((e) => e.type === "policy.applied", 30_000, applied);
      assert.equal((flip.policy as { version: number }).version, 2);
      assert.equal(await connect(host), "allowed", "kept across the reload");

      const bad = await curl(socket, [
        "-X",
        "POST",
        "-d",
        '{"allow":"egress:x","ttl":"1m","reason":"r"}',
        "http://aegisbpf/v1/exceptions",
      ]);
      assert.equal(bad.status, 400, bad.body);
      assert.equal((await curl(socket, ["-X", "DELETE", `http://aegisbpf/v1/exceptions/${id}`])).status, 204);
      await within(2000, "EPERM", () => connect(host));
      assert.equal((await curl(socket, ["-X", "DELETE", `http://aegisbpf/v1/exceptions/${id}`])).status, 404);
    });
  },
);
