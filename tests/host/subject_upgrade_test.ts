/**
 * A package upgrade of a program a rule names: dpkg writes the new binary beside the old one and renames it
 * over the path, so the path now names another inode. The running agent's rule path watcher sees it,
 * resolves the policy again and flips, so that the new binary is the program the rule names, as it does for
 * file and exec rules. Here on the host's cgroup hooks, where BPF-LSM (and its rename hook) cannot load.
 */
import assert from "node:assert/strict";
import { policy, spawn, withHost, writePolicy } from "../support/agent_host.ts";
import { rootTest } from "../support/privileged.ts";

/** How long a change may take to be covered: "within a second", with room for a loaded machine. */
const COVERED_MS = 1500;
const PYTHON = Deno.realPathSync("/usr/bin/python3");

rootTest(
  "[root] the agent follows a program a rule names through an upgrade that renames a new binary over it",
  async () => {
    await withHost(async (host) => {
      const prog = `${host.dir}/prog`;
      const install = (path: string) => {
        Deno.copyFileSync(PYTHON, path);
        Deno.chmodSync(path, 0o755);
      };
      install(prog);
      const file = writePolicy(
        host,
        "p.yaml",
        policy(
          host,
          `  network:\n    egress:\n      deny:\n        - { id: no-prog, cidr: 127.0.0.2/32, exe: ${prog} }\n`,
        ),
      );
      await using agent = spawn(host, ["--policy", file, "--enforce"]);
      await agent.ready();
      const attempt = async () => {
        const code = "import socket\ntry:\n  socket.create_connection(('127.0.0.2', 9), 2)\n" +
          "except PermissionError:\n  print('EPERM')\nexcept OSError:\n  print('allowed')\nelse:\n  print('allowed')\n";
        const result = await host.cgroup.runBash(`'${prog}' -c "${code}"`);
        return result.stdout.trim();
      };
      assert.equal(await attempt(), "EPERM", "the program the rule names");
      const before = Deno.statSync(prog).ino;
      const from = agent.events.length;
      install(`${prog}.dpkg-new`);
      Deno.renameSync(`${prog}.dpkg-new`, prog);
      assert.notEqual(Deno.statSync(prog).ino, before, "the upgrade made another inode");
      await agent.waitFor(
        (e) => e.type === "policy.refreshed" && e.rules.includes("no-prog"),
        COVERED_MS,
        from,
      );
      assert.equal(await attempt(), "EPERM", "the upgraded program is still the one the rule names");
    });
  },
);
