import assert from "node:assert/strict";
import { scratch } from "./cli.ts";

Deno.test("doctor refuses an unknown flag and an argument, exit 2, one line naming the help", async () => {
  await using s = await scratch();
  const flag = await s.run(["doctor", "--fast"]);
  assert.equal(flag.code, 2);
  assert.equal(flag.stdout, "");
  assert.equal(
    flag.stderr,
    'aegisbpf: error: unknown flag --fast for "doctor"; see aegisbpf doctor --help\n',
  );
  const arg = await s.run(["doctor", "now"]);
  assert.equal(arg.code, 2);
  assert.match(arg.stderr, /^aegisbpf: error: unexpected argument "now" for "doctor"/);
  const value = await s.run(["doctor", "--textfile-dir"]);
  assert.equal(value.code, 2);
  assert.match(value.stderr, /flag --textfile-dir needs a value/);
});

Deno.test("doctor --help describes the verdicts and the exit code", async () => {
  await using s = await scratch();
  const help = await s.run(["doctor", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /enforce, audit-only or unavailable/);
  assert.match(help.stdout, /Exit 0 when every area can at least audit/);
});
