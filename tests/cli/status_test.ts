import assert from "node:assert/strict";
import { isPlain, scratch } from "./cli.ts";

Deno.test("status with nothing pinned prints the screen, says what to do, exits 0, no colour off a terminal", async () => {
  await using s = await scratch();
  const result = await s.run(["status"]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^aegisbpf {2}mode nothing pinned {2}unhealthy\n/);
  assert.match(result.stdout, /^HOOK +ATTACHED +DENY +AUDIT$/m);
  assert.match(result.stdout, /^ingress +- +0 +0$/m);
  assert.match(result.stdout, /start the agent \(aegisbpf run\) or apply a policy/);
  assert.ok(isPlain(result.stdout));
  const noColor = await s.run(["status"], { env: { FORCE_COLOR: "1", NO_COLOR: "1" } });
  assert.ok(isPlain(noColor.stdout), "NO_COLOR wins");
});

Deno.test("status refuses a bad flag and an argument with exit 2", async () => {
  await using s = await scratch();
  const flag = await s.run(["status", "--watch"]);
  assert.equal(flag.code, 2);
  assert.match(
    flag.stderr,
    /^aegisbpf: error: unknown flag --watch for "status"; see aegisbpf status --help\n$/,
  );
  assert.equal((await s.run(["status", "now"])).code, 2);
});
