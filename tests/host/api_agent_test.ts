/**
 * The local API served by a real agent (`run --api unix:PATH`), driven with curl over the socket as an
 * operator would: health, status, metrics and events answer; an ingress session opens a `default: drop`
 * interface (XDP on a veth, agent in the server's network namespace) for one client until its TTL ends, or
 * until it is deleted; break-glass through the API reaches the kernel.
 */
import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { AgentRun } from "../support/agent_run.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { VethPair } from "../support/netns.ts";
import { curl, exists } from "../support/api_client.ts";
import { rootTest } from "../support/privileged.ts";

const PORT = 8471;

rootTest(
  "[root] run --api: health, status, metrics, events, break-glass, and ingress sessions with a TTL",
  async () => {
    const bpffs = await TestBpffs.mount();
    const dir = await Deno.makeTempDir({ prefix: "aegisbpf-api-agent-" });
    const dirs = { bpffs: bpffs.path, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
    const socket = `${dir}/api.sock`;
    const pair = await VethPair.create();
    const echo = await pair.serve([PORT]);
    try {
      Deno.mkdirSync(dirs.configDir, { mode: 0o700 });
      const policy = `${dir}/p.yaml`;
      Deno.writeTextFileSync(
        policy,
        `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: api-test, version: 1 }\nspec:\n` +
          `  mode: enforce\n  network:\n    ingress:\n      interfaces: [${pair.serverInterface}]\n` +
          `      default: drop\n      failsafe: { ports: [22], protocol: tcp }\n`,
      );
      await using agent = AgentRun.spawn(dirs, [
        "--log-level",
        "debug",
        "--policy",
        policy,
        "--api",
        `unix:${socket}`,
      ], {
        prefix: ["nsenter", `--net=/run/netns/${pair.server}`],
      });
      await agent.ready();
      // The API starts once the policy is applied.
      for (let i = 0; i < 200 && !(await exists(socket)); i++) await new Promise((r) => setTimeout(r, 50));
      if (!(await exists(socket))) {
        agent.kill("SIGTERM");
        const exit = await agent.exit();
        assert.fail(`no API socket: exit ${exit.code}: ${exit.stderr}`);
      }
      assert.equal((await Deno.stat(socket)).mode! & 0o777, 0o600);

      // A client that asks for events and never reads them: the agent goes on serving everyone else.
      const stalled = await Deno.connect({ transport: "unix", path: socket });
      await stalled.write(new TextEncoder().encode("GET /v1/events HTTP/1.1\r\nHost: a\r\n\r\n"));

      const ready = await curl(socket, ["http://aegisbpf/health/ready"]);
      assert.equal(ready.status, 200, ready.body);
      assert.equal(JSON.parse(ready.body).health.policy.name, "api-test");
      const status = await curl(socket, ["http://aegisbpf/v1/status"]);
      assert.equal(JSON.parse(status.body).mode.effective, "enforce");
      const metrics = await curl(socket, ["http://aegisbpf/metrics"]);
      assert.match(
        metrics.body,
        new RegExp(`^aegisbpf_hook_attached\\{hook="xdp@${pair.serverInterface}"\\} 1$`, "m"),
      );
      const events = await curl(socket, [
        "-N",
        "--max-time",
        "2",
        "-H",
        "Last-Event-ID: 0",
        "http://aegisbpf/v1/events",
      ]);
      assert.match(events.body, /^data: \{[^\n]*"type":"agent\.start"/m);
      assert.match(events.body, /^data: \{[^\n]*"type":"policy\.applied"[^\n]*\}\nid: \d+$/m);

      assert.equal(await pair.reach("tcp", pair.serverAddress, PORT), "timeout", "default: drop");
      const body = JSON.stringify({ cidr: `${pair.clientAddress}/32`, ports: [PORT], ttl: "3s" });
      const opened = await curl(socket, ["-X", "POST", "-d", body, "http://aegisbpf/v1/ingress/sessions"]);
      assert.equal(opened.status, 201, opened.body);
      const session = JSON.parse(opened.body);
      assert.deepEqual(session.interfaces, [pair.serverInterface]);
      const openedAt = Date.now();
      assert.equal(
        await pair.reach("tcp", pair.serverAddress, PORT),
        "answered",
        "the session lets it through",
      );
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 3_500 - (Date.now() - openedAt))));
      assert.equal(await pair.reach("tcp", pair.serverAddress, PORT), "timeout", "the TTL ended it");

      const again = await curl(socket, [
        "-X",
        "POST",
        "-d",
        JSON.stringify({ cidr: `${pair.clientAddress}/32`, ttl: "10m" }),
        "http://aegisbpf/v1/ingress/sessions",
      ]);
      assert.equal(again.status, 201, again.body);
      assert.equal(await pair.reach("tcp", pair.serverAddress, PORT), "answered");
      const id = JSON.parse(again.body).id;
      assert.equal(
        (await curl(socket, ["-X", "DELETE", `http://aegisbpf/v1/ingress/sessions/${id}`])).status,
        204,
      );
      assert.equal(await pair.reach("tcp", pair.serverAddress, PORT), "timeout", "deleted");
      assert.equal(
        (await curl(socket, ["-X", "DELETE", `http://aegisbpf/v1/ingress/sessions/${id}`])).status,
        404,
      );
      const counted = await curl(socket, ["http://aegisbpf/metrics"]);
      const drops = new RegExp(
        `^aegisbpf_xdp_packets_total\\{interface="${pair.serverInterface}",action="drop"\\} (\\d+)$`,
        "m",
      ).exec(counted.body);
      assert.ok(drops && Number(drops[1]) >= 2, `XDP drops counted on the interface: ${counted.body}`);
      assert.match(counted.body, /^aegisbpf_rule_hits_total\{rule="[^"]+",decision="deny"\} \d+$/m);
      const badCidr = await curl(socket, [
        "-X",
        "POST",
        "-d",
        '{"cidr":"nope","ttl":"1m"}',
        "http://aegisbpf/v1/ingress/sessions",
      ]);
      assert.equal(badCidr.status, 400);

      const glass = await curl(socket, [
        "-X",
        "POST",
        "-d",
        '{"on":true,"reason":"api test"}',
        "http://aegisbpf/v1/break-glass",
      ]);
      assert.equal(glass.status, 200, glass.body);
      assert.equal(
        await pair.reach("tcp", pair.serverAddress, PORT),
        "answered",
        "break-glass: audit everywhere",
      );
      await agent.waitFor((event) => event.type === "break_glass.on", 5_000);
      const off = await curl(socket, ["-X", "POST", "-d", '{"on":false}', "http://aegisbpf/v1/break-glass"]);
      assert.equal(off.status, 200, off.body);
      assert.equal(await pair.reach("tcp", pair.serverAddress, PORT), "timeout");

      agent.kill("SIGTERM");
      assert.equal((await agent.exit()).code, 0);
      assert.throws(() => Deno.statSync(socket), Deno.errors.NotFound, "the socket is removed at exit");
    } finally {
      await echo.stop();
      await pair.remove();
      DataPlane.detach(bpffs.path);
      await bpffs.unmount();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

rootTest(
  "[root] run --api: a posted policy and a rollback are applied by a helper process and picked up by the agent",
  async () => {
    const bpffs = await TestBpffs.mount();
    const dir = await Deno.makeTempDir({ prefix: "aegisbpf-api-apply-" });
    const dirs = { bpffs: bpffs.path, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
    const socket = `${dir}/api.sock`;
    // 240.0.0.0/4 is never routed: these policies deny nothing that runs here.
    const policy = (version: number, cidr: string) =>
      `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: api-apply, version: ${version} }\n` +
      `spec:\n  mode: audit\n  network:\n    egress:\n      deny: [{ id: v${version}, cidr: ${cidr} }]\n`;
    try {
      Deno.mkdirSync(dirs.configDir, { mode: 0o700 });
      Deno.writeTextFileSync(`${dir}/p.yaml`, policy(1, "240.0.0.1/32"));
      await using agent = AgentRun.spawn(dirs, ["--policy", `${dir}/p.yaml`, "--api", `unix:${socket}`]);
      await agent.ready();
      for (let i = 0; i < 200 && !(await exists(socket)); i++) await new Promise((r) => setTimeout(r, 50));

      const applied = await curl(socket, [
        "-X",
        "POST",
        "--data-binary",
        policy(2, "240.0.0.2/32"),
        "http://aegisbpf/v1/policy",
      ]);
      assert.equal(applied.status, 200, applied.body);
      const summary = JSON.parse(applied.body);
      assert.equal(summary.name, "api-apply");
      assert.equal(summary.version, 2);
      assert.equal(summary.outcome, "applied");
      assert.deepEqual(summary.rules.egress, 1);
      const picked = await agent.waitFor((event) =>
        event.type === "policy.applied" && event.history === summary.seq
      );
      assert.equal(picked.source, "another command");
      assert.equal(picked.policy.version, 2);

      const back = await curl(socket, ["-X", "POST", "-d", "{}", "http://aegisbpf/v1/policy/rollback"]);
      assert.equal(back.status, 200, back.body);
      assert.equal(JSON.parse(back.body).version, 1);
      await agent.waitFor((event) => event.type === "policy.rolled_back" && event.policy.version === 1);

      const bad = await curl(socket, [
        "-X",
        "POST",
        "--data-binary",
        policy(3, "240.0.0.300/32"),
        "http://aegisbpf/v1/policy",
      ]);
      assert.equal(bad.status, 400, bad.body);
      assert.match(JSON.parse(bad.body).detail, /^api:8:\d+: /);
      const lockout = `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: l, version: 4 }\n` +
        `spec:\n  mode: enforce\n  network: { ingress: { interfaces: [lo], default: drop } }\n`;
      const refused = await curl(socket, [
        "-X",
        "POST",
        "--data-binary",
        lockout,
        "http://aegisbpf/v1/policy",
      ]);
      assert.equal(refused.status, 409, refused.body);
      assert.equal(JSON.parse((await curl(socket, ["http://aegisbpf/v1/status"])).body).policy.version, 1);
    } finally {
      DataPlane.detach(bpffs.path);
      await bpffs.unmount();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
