import assert from "node:assert/strict";
import { helpFor } from "./help.ts";
import { palette } from "../text/palette.ts";
import { runTest, TEST_REGISTRY } from "./testing.ts";

Deno.test("topHelp() lists every command with its arguments, and the global flags", async () => {
  const { stdout } = await runTest(["--help"]);
  assert.match(stdout, /\n {2}fail input\|refused\|other +throw the error named by KIND\n/);
  assert.match(stdout, /\n {2}policy sign FILE --key KEY +sign a policy\n/);
  for (
    const flag of [
      "--log-format FORMAT",
      "--log-level LEVEL",
      "--bpffs DIR",
      "--state-dir DIR",
      "--config-dir DIR",
    ]
  ) {
    assert.ok(stdout.includes(flag), flag);
  }
});

Deno.test("commandHelp() shows usage, arguments, flags with descriptions, examples and the global flags", async () => {
  const { stdout } = await runTest(["policy", "sign", "--help"]);
  assert.equal(
    stdout,
    `Usage: aegisbpf policy sign FILE --key KEY [flags]

Sign a policy

Arguments:
  FILE   the policy

Flags:
      --key KEY              private key
      --out BUNDLE           where the bundle goes
      --tag VALUE            a tag (repeatable)
      --mode audit|enforce   the mode
      --json                 print JSON
  -h, --help                 show this help

Examples:
  aegisbpf policy sign p.yaml --key k.pem

Global flags: --log-format, --log-level, --bpffs, --state-dir, --config-dir, --lock-timeout (see aegisbpf --help)
`,
  );
});

Deno.test("helpFor() gives the help of a group, of a command, and rejects unknown words", () => {
  const style = palette(false);
  assert.match(helpFor(TEST_REGISTRY, [], style), /^Usage: aegisbpf <command> \[flags\]/);
  assert.match(helpFor(TEST_REGISTRY, ["policy"], style), /^Usage: aegisbpf policy <command> \[flags\]/);
  assert.match(helpFor(TEST_REGISTRY, ["policy", "sign"], style), /^Usage: aegisbpf policy sign FILE/);
  assert.throws(() => helpFor(TEST_REGISTRY, ["policy", "frob"], style), {
    name: "InputError",
    message: 'unknown command "policy frob"; see aegisbpf policy --help',
  });
  assert.throws(() => helpFor(TEST_REGISTRY, ["fail", "more"], style), { name: "InputError" });
});
