import assert from "node:assert/strict";
import { runTest } from "./testing.ts";

Deno.test("runCli() exits 2 for an InputError and prints FILE:LINE:COL before the message", async () => {
  const { code, stderr } = await runTest(["fail", "input"]);
  assert.equal(code, 2);
  assert.equal(stderr, "aegisbpf: error: p.yaml:3:7: bad rule\n");
});

Deno.test("runCli() exits 3 for a RefusedError", async () => {
  const { code, stderr } = await runTest(["fail", "refused"]);
  assert.equal(code, 3);
  assert.equal(stderr, "aegisbpf: error: would lock the host out\n");
});

Deno.test("runCli() exits 1 for any other error and prints only its first line without a stack", async () => {
  const { code, stderr } = await runTest(["fail", "other"]);
  assert.equal(code, 1);
  assert.equal(stderr, "aegisbpf: error: disk on fire (the full message with --log-level debug)\n");
});

Deno.test("runCli() prints the stack with --log-level debug", async () => {
  const { code, stderr } = await runTest(["fail", "other", "--log-level", "debug"]);
  assert.equal(code, 1);
  const [first, ...rest] = stderr.split("\n");
  assert.equal(first, "aegisbpf: error: disk on fire");
  assert.match(rest.join("\n"), /second line\n\s+at /);
});

Deno.test("runCli() prints one JSON object with the position for --log-format json", async () => {
  const { code, stderr } = await runTest(["--log-format", "json", "fail", "input"]);
  assert.equal(code, 2);
  assert.equal(stderr.trimEnd().split("\n").length, 1);
  assert.deepEqual(JSON.parse(stderr), {
    level: "error",
    error: "bad rule",
    exitCode: 2,
    file: "p.yaml",
    line: 3,
    column: 7,
  });
});

Deno.test("runCli() reports a usage error as JSON when --log-format json comes after the mistake", async () => {
  const { code, stderr } = await runTest(["policy", "sign", "--frob", "--log-format=json"]);
  assert.equal(code, 2);
  assert.deepEqual(JSON.parse(stderr), {
    level: "error",
    error: 'unknown flag --frob for "policy sign"; see aegisbpf policy sign --help',
    exitCode: 2,
  });
});

Deno.test("runCli() adds the stack to the JSON object only with --log-level debug", async () => {
  const plain = JSON.parse((await runTest(["fail", "other", "--log-format", "json"])).stderr);
  assert.equal(plain.stack, undefined);
  assert.equal(plain.error, "disk on fire\nsecond line");
  const debug = JSON.parse(
    (await runTest(["fail", "other", "--log-format", "json", "--log-level", "debug"])).stderr,
  );
  assert.match(debug.stack, /^Error: disk on fire/);
});
