/**
 * The readiness probe (/health/ready, served on the unauthenticated TCP listener too) reads only what is
 * cheap: not the stale-rule check, which stats every denied inode and walks every recursive rule's tree.
 * No root needed: nothing is pinned, the readers are the point.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EventHub } from "../../lib/api/event_hub.ts";
import { writeApplied } from "../../lib/state/apply_state.ts";
import { agentApiDeps } from "../../lib/agent/api_deps.ts";
import { checkHealth } from "../../lib/report/health.ts";

const SESSIONS = { add: () => Promise.reject(new Error("unused")), remove: () => Promise.resolve(false) };

Deno.test("agentApiDeps() readiness walks no recursive rule's tree and stats no denied inode", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-ready-test-" });
  const hub = new EventHub();
  try {
    const where = { bpffs: join(dir, "bpffs"), stateDir: join(dir, "state"), configDir: join(dir, "etc") };
    for (const path of Object.values(where)) await Deno.mkdir(path);
    const tree = join(dir, "keys");
    await Deno.mkdir(tree);
    // A big tree under the recursive rule: 200 directories of 100 files.
    for (let d = 0; d < 200; d++) {
      await Deno.mkdir(join(tree, `d${d}`));
      for (let f = 0; f < 100; f++) await Deno.writeTextFile(join(tree, `d${d}`, `f${f}`), "");
    }
    writeApplied(where.stateDir, {
      seq: 1,
      name: "ready-test",
      version: 1,
      sha256: "0".repeat(64),
      contentSha256: "0".repeat(64),
      generation: 1,
      time: new Date().toISOString(),
      inodes: [{ rule: "gone", area: "file", path: join(dir, "gone"), dev: 1, ino: "1" }],
      recursive: [{ rule: "keys", area: "file", path: tree }],
    });
    const deps = agentApiDeps(where, hub, SESSIONS, () => "");

    // The health command reads everything: the missing inode, and every file under the recursive rule (a
    // hundred listed, the rest counted).
    let started = performance.now();
    const full = checkHealth(where, { requireEnforce: false, connections: false });
    const fullMs = performance.now() - started;
    const listed = full.staleRules!.stale.filter((rule) => rule.problem === "new").length;
    assert.equal(listed + full.staleRules!.omitted, 20_000);
    assert.ok(full.staleRules!.stale.some((rule) => rule.problem === "missing"));
    // The agent's status over the API stats the inodes listed one by one, but walks no tree: the agent's
    // watcher covers them, and its loop must not stall for a walk.
    const status = deps.status() as { staleRules: { stale: { problem: string }[] } };
    const problems = status.staleRules.stale.map((rule) => rule.problem);
    assert.deepEqual(problems, ["missing"]);

    started = performance.now();
    const { report } = await deps.health() as {
      report: { staleRules: unknown; connections: unknown; problems: string[]; policy: { name: string } };
    };
    // Plain checks: a deep diff of 20,000 stale rules would take longer than the test.
    assert.ok(report.staleRules === null, "the probe checked stale rules");
    assert.ok(report.connections === null, "the probe listed connections");
    assert.equal(report.policy.name, "ready-test");
    assert.deepEqual(report.problems.filter((problem) => problem.includes("stale")), []);
    const readyMs = performance.now() - started;
    console.log(`health ${fullMs.toFixed(0)} ms, ready ${readyMs.toFixed(1)} ms over 20,000 files`);
    assert.ok(readyMs < fullMs / 10, `ready took ${readyMs} ms, health ${fullMs} ms`);
  } finally {
    hub.close();
    await Deno.remove(dir, { recursive: true });
  }
});
