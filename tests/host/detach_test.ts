/**
 * `detach` through the real command, after a real `policy apply` (socket programs on the cgroup v2 root,
 * denying only binds of an unused high port): everything pinned goes, the history stays; a running agent
 * refuses it unless --force; a detach that cannot remove an entry names it and exits 1.
 */
import { takeAgentLock } from "../../lib/state/agent_lock.ts";
import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { type Scratch, scratch } from "../cli/cli.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { must, rootTest, run as runProcess } from "../support/privileged.ts";

const PORT = 61852;

type Env = { s: Scratch; bpffs: string; run: (args: string[]) => ReturnType<Scratch["run"]> };

async function withApplied(fn: (env: Env) => Promise<void>): Promise<void> {
  const bpffs = await TestBpffs.mount();
  try {
    await using s = await scratch();
    const run = (args: string[]) => s.run(args, { env: { AEGISBPF_BPFFS: bpffs.path, NO_COLOR: "1" } });
    await Deno.writeTextFile(
      `${s.dir}/p.yaml`,
      `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: detach-test, version: 1 }\nspec:\n` +
        `  mode: enforce\n  network:\n    bind:\n      deny: [{ id: port, port: ${PORT}, protocol: tcp }]\n`,
    );
    try {
      const applied = await run(["policy", "apply", "p.yaml"]);
      assert.equal(applied.code, 0, applied.stderr);
      await fn({ s, bpffs: bpffs.path, run });
    } finally {
      DataPlane.detach(bpffs.path);
    }
  } finally {
    await bpffs.unmount();
  }
}

function agentRecord(pid: number): string {
  return JSON.stringify({
    pid,
    startedAt: new Date().toISOString(),
    mode: "enforce",
    areas: {},
    partial: [],
  });
}

rootTest(
  "[root] detach removes every pin and keeps the history; a second detach has nothing to do",
  async () => {
    await withApplied(async ({ bpffs, run }) => {
      // Every program the load loaded is pinned (for the next process of this build to adopt): the bind
      // area's (aegis_bind4 and aegis_bind6, with the BPF-LSM guards where they load, else the identity
      // guard's tracepoint), and as many links: the two cgroup hooks and the identity guard.
      const programs = [...Deno.readDirSync(`${bpffs}/aegisbpf/progs`)].length;
      assert.ok(programs >= 3, `${programs} programs pinned`);
      const result = await run(["detach"]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(
        result.stdout,
        new RegExp(
          `^detached: removed 3 links, ${programs} programs and \\d+ maps under ${bpffs}/aegisbpf; nothing is pinned ` +
            `there now; history kept in `,
        ),
      );
      assert.throws(() => Deno.statSync(`${bpffs}/aegisbpf`), Deno.errors.NotFound);
      const history = await run(["policy", "history", "--json"]);
      assert.equal(history.code, 0);
      assert.match(history.stdout, /detach-test/);
      const health = await run(["health"]);
      assert.equal(health.code, 1);
      assert.match(health.stdout, /nothing of aegisbpf is pinned/);
      const again = await run(["detach"]);
      assert.equal(again.code, 0);
      assert.match(again.stdout, /^nothing of aegisbpf is pinned under .*; nothing to detach\n$/);
    });
  },
);

rootTest(
  "[root] detach refuses (exit 3) while an agent runs, --force detaches, a dead agent's record goes",
  async () => {
    await withApplied(async ({ s, bpffs, run }) => {
      // A live agent holds the agent lock: this test process plays it.
      const agentLock = await takeAgentLock(s.stateDir);
      await Deno.writeTextFile(`${s.stateDir}/agent.json`, agentRecord(Deno.pid));
      const refused = await run(["detach"]);
      assert.equal(refused.code, 3);
      assert.equal(refused.stdout, "");
      assert.match(
        refused.stderr,
        new RegExp(`^aegisbpf: error: Refused: an agent is running \\(pid ${Deno.pid}\\).*pass --force\\n$`),
      );
      assert.ok(Deno.statSync(`${bpffs}/aegisbpf/links/aegis_bind4`), "nothing removed");
      const forced = await run(["detach", "--force"]);
      assert.equal(forced.code, 0, forced.stderr);
      assert.match(forced.stderr, /detaching under the running agent/);
      assert.match(
        forced.stdout,
        new RegExp(
          `; the running agent \\(pid ${Deno.pid}\\) keeps its own programs attached until it exits;`,
        ),
      );
      assert.doesNotMatch(forced.stdout, /runs in the kernel/, "it speaks only of its own pin directory");
      assert.throws(() => Deno.statSync(`${bpffs}/aegisbpf`), Deno.errors.NotFound);
      assert.ok(Deno.statSync(`${s.stateDir}/agent.json`), "a live agent's record is its own");
      agentLock[Symbol.dispose]();

      const child = new Deno.Command("true").spawn();
      await child.status;
      await Deno.writeTextFile(`${s.stateDir}/agent.json`, agentRecord(child.pid));
      const dead = await run(["detach"]);
      assert.equal(dead.code, 0, dead.stderr);
      assert.throws(() => Deno.statSync(`${s.stateDir}/agent.json`), Deno.errors.NotFound);
    });
  },
);

rootTest(
  "[root] detach that cannot remove an entry goes on, names it, exits 1; a second run finishes",
  async () => {
    await withApplied(async ({ bpffs, run }) => {
      // A mount over the programs directory holding a non-empty directory: that entry cannot be removed.
      const progs = `${bpffs}/aegisbpf/progs`;
      await must("mount", ["-t", "tmpfs", "tmpfs", progs]);
      try {
        await Deno.mkdir(`${progs}/stuck/inner`, { recursive: true });
        const result = await run(["detach"]);
        assert.equal(result.code, 1);
        assert.match(result.stderr, /^aegisbpf: left .*\/aegisbpf\/progs\/stuck: /m);
        assert.match(
          result.stderr,
          /^aegisbpf: error: Detach removed \d+ entries but left 1 under .* \(listed above\), with audit forced; fix the cause and run aegisbpf detach again\n$/m,
        );
        assert.throws(
          () => Deno.statSync(`${bpffs}/aegisbpf/links/aegis_bind4`),
          Deno.errors.NotFound,
          "links gone",
        );
      } finally {
        await runProcess("umount", [progs]);
      }
      const again = await run(["detach"]);
      assert.equal(again.code, 0, again.stderr);
      assert.throws(() => Deno.statSync(`${bpffs}/aegisbpf`), Deno.errors.NotFound);
    });
  },
);
