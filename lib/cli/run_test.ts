import assert from "node:assert/strict";
import { runTest } from "./testing.ts";

Deno.test("runCli() prints help to stdout with exit 0 for --help, -h and at every level", async () => {
  for (
    const argv of [["--help"], ["-h"], ["policy", "--help"], ["policy", "sign", "-h"], [
      "-h",
      "policy",
      "sign",
    ]]
  ) {
    const { code, stdout, stderr } = await runTest(argv);
    assert.equal(code, 0, argv.join(" "));
    assert.match(stdout, /^Usage: aegisbpf /, argv.join(" "));
    assert.equal(stderr, "");
  }
});

Deno.test("runCli() gives --help precedence over a missing argument", async () => {
  const { code, stdout } = await runTest(["policy", "sign", "--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /^Usage: aegisbpf policy sign FILE --key KEY \[flags\]\n/);
});

Deno.test("runCli() prints the help to stderr with exit 2 when the command or subcommand is missing", async () => {
  for (const argv of [[], ["policy"]]) {
    const { code, stdout, stderr } = await runTest(argv);
    assert.equal(code, 2);
    assert.equal(stdout, "");
    assert.match(stderr, /^Usage: aegisbpf /);
  }
});

Deno.test("runCli() reports a missing command as one JSON object with --log-format json", async () => {
  const { code, stderr } = await runTest(["policy", "--log-format", "json"]);
  assert.equal(code, 2);
  assert.equal(JSON.parse(stderr).error, "missing command; see aegisbpf policy --help");
});
