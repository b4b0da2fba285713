import assert from "node:assert/strict";
import { appendHistory } from "../../lib/state/history.ts";
import { scratch } from "./cli.ts";

Deno.test("metrics with nothing pinned (after detach) says no policy is in force, not the last one in history", async () => {
  await using s = await scratch();
  // What detach leaves: history names the last policy, the pins are gone.
  appendHistory(s.stateDir, {
    uid: 0,
    source: "p.yaml",
    kind: "policy",
    name: "gone",
    version: 9,
    sha256: "d".repeat(64),
    outcome: "applied",
    content: "x",
  });
  const { code, stdout, stderr } = await s.run(["metrics"]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^aegisbpf_enforcing 0$/m);
  assert.doesNotMatch(stdout, /^aegisbpf_policy_info\{/m);
  assert.doesNotMatch(stdout, /^aegisbpf_policy_version /m);
  assert.doesNotMatch(stdout, /^aegisbpf_policy_applied_timestamp_seconds /m);
  assert.doesNotMatch(stdout, /gone/);
  assert.match(
    stderr,
    /^aegisbpf: info: no policy is in force: nothing of aegisbpf is pinned under .*\/bpffs\/aegisbpf; /m,
  );
});
