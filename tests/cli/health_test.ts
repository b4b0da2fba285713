import assert from "node:assert/strict";
import { scratch } from "./cli.ts";

Deno.test("health with nothing pinned is unhealthy (exit 1) and says what to do", async () => {
  await using s = await scratch();
  const text = await s.run(["health"], { env: { NO_COLOR: "1" } });
  assert.equal(text.code, 1);
  assert.equal(text.stderr, "");
  assert.match(text.stdout, /^unhealthy: nothing enforcing\n/);
  assert.match(
    text.stdout,
    /- nothing of aegisbpf is pinned under .*: start the agent \(aegisbpf run\) or apply a policy/,
  );
  const json = await s.run(["health", "--json"]);
  assert.equal(json.code, 1);
  const report = JSON.parse(json.stdout);
  assert.equal(report.healthy, false);
  assert.equal(report.mode.effective, "none");
  assert.equal(report.pins.present, false);
});

Deno.test("health refuses a bad flag (exit 2) and a value given to a boolean flag", async () => {
  await using s = await scratch();
  const flag = await s.run(["health", "--require-enforcement"]);
  assert.equal(flag.code, 2);
  assert.equal(flag.stdout, "");
  assert.match(
    flag.stderr,
    /^aegisbpf: error: unknown flag --require-enforcement for "health"; see aegisbpf health --help\n$/,
  );
  const value = await s.run(["health", "--json=yes"]);
  assert.equal(value.code, 2);
  assert.match(value.stderr, /flag --json takes no value/);
});

Deno.test("health reports an unreadable agent.json as unhealthy, naming the file", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.stateDir}/agent.json`, JSON.stringify({ pid: "one" }));
  const json = await s.run(["health", "--json"]);
  assert.equal(json.code, 1);
  const report = JSON.parse(json.stdout);
  assert.equal(report.agent.state, "unreadable");
  assert.match(report.agent.why, /agent\.json: pid: /);
});
