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

Deno.test("runCli() escapes what a command prints and what an error says, keeping colour on a terminal", async () => {
  const hostile = "\x1b[2J\x9b\u202e.yaml";
  // deno-lint-ignore no-control-regex -- finding them is the point
  const raw = /[\x00-\x09\x0b-\x1a\x1c-\x1f\x7f-\x9f\u202e]|\x1b(?!\[(?:1|2|22|31|32|33|36|39)m)/;
  for (const tty of [false, true]) {
    const printed = await runTest(["policy", "sign", hostile, "--key", "k"], {}, tty);
    assert.equal(printed.code, 0);
    assert.equal(raw.exec(printed.stdout), null, printed.stdout);
    assert.equal(JSON.parse(printed.stdout).args.FILE, hostile);
    const refused = await runTest(["policy", "sign", "a", "--mode", hostile], {}, tty);
    assert.equal(refused.code, 2);
    assert.equal(raw.exec(refused.stderr), null, refused.stderr);
    assert.ok(refused.stderr.includes("\\x1b[2J\\u009b\\u202e.yaml"), refused.stderr);
    assert.equal(refused.stderr.includes("\x1b[31m"), tty, "the palette's red only on a terminal");
  }
});
