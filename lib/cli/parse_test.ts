import assert from "node:assert/strict";
import { defineCommand } from "./command.ts";
import { parseInvocation } from "./parse.ts";
import { runTest } from "./testing.ts";

function parsed(stdout: string) {
  return JSON.parse(stdout) as {
    flags: Record<string, unknown>;
    args: Record<string, unknown>;
    globals: unknown;
  };
}

Deno.test("parseInvocation() reads flags, arguments and defaults of a subcommand", async () => {
  const { code, stdout } = await runTest([
    "policy",
    "sign",
    "p.yaml",
    "--key",
    "k.pem",
    "--tag=a",
    "--tag",
    "b",
  ]);
  assert.equal(code, 0);
  assert.deepEqual(parsed(stdout).flags, { key: "k.pem", tag: ["a", "b"], mode: "audit" });
  assert.deepEqual(parsed(stdout).args, { FILE: "p.yaml" });
});

Deno.test("parseInvocation() accepts global flags before and after the command", async () => {
  const { stdout } = await runTest(
    ["--state-dir", "/s", "policy", "--bpffs=/b", "sign", "f", "--key", "k", "--config-dir", "/c"],
  );
  assert.deepEqual(parsed(stdout).globals, {
    logFormat: "text",
    logLevel: "info",
    bpffs: "/b",
    stateDir: "/s",
    configDir: "/c",
    lockTimeoutMs: 60_000,
  });
});

Deno.test("parseInvocation() reads --lock-timeout as a duration and refuses one that is not", async () => {
  const { stdout } = await runTest(["policy", "sign", "f", "--key", "k", "--lock-timeout", "5m"]);
  assert.equal((parsed(stdout).globals as Record<string, number>).lockTimeoutMs, 300_000);
  const refused = await runTest(["policy", "sign", "f", "--key", "k", "--lock-timeout", "soon"]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /--lock-timeout "soon" is not a duration/);
});

Deno.test("parseInvocation() takes directories from the environment when no flag names them", async () => {
  const env = { AEGISBPF_BPFFS: "/env/bpf", AEGISBPF_STATE_DIR: "", AEGISBPF_CONFIG_DIR: "/env/etc" };
  const { stdout } = await runTest(["policy", "sign", "f", "--key", "k", "--config-dir", "/flag"], env);
  const globals = parsed(stdout).globals as Record<string, string>;
  assert.equal(globals.bpffs, "/env/bpf");
  assert.equal(globals.stateDir, "/var/lib/aegisbpf");
  assert.equal(globals.configDir, "/flag");
});

Deno.test("parseInvocation() treats words after -- as arguments", async () => {
  const { stdout } = await runTest(["policy", "sign", "--key", "k", "--", "--odd-name.yaml"]);
  assert.deepEqual(parsed(stdout).args, { FILE: "--odd-name.yaml" });
});

const usageErrors: [string[], string][] = [
  [["frob"], 'unknown command "frob"; see aegisbpf --help'],
  [["policy", "frob"], 'unknown command "policy frob"; see aegisbpf policy --help'],
  [
    ["policy", "sign", "f", "--key", "k", "--frob"],
    'unknown flag --frob for "policy sign"; see aegisbpf policy sign --help',
  ],
  [["--frob", "policy"], "unknown flag --frob; see aegisbpf --help"],
  [
    ["policy", "sign", "f", "--key"],
    'flag --key needs a value for "policy sign"; see aegisbpf policy sign --help',
  ],
  [["policy", "sign", "f"], 'missing --key for "policy sign"; see aegisbpf policy sign --help'],
  [["policy", "sign", "--key", "k"], 'missing FILE for "policy sign"; see aegisbpf policy sign --help'],
  [
    ["policy", "sign", "f", "g", "--key", "k"],
    'unexpected argument "g" for "policy sign"; see aegisbpf policy sign --help',
  ],
  [
    ["policy", "sign", "f", "--key", "k", "--key", "j"],
    'flag --key given twice for "policy sign"; see aegisbpf policy sign --help',
  ],
  [
    ["policy", "sign", "f", "--key", "k", "--json=yes"],
    'flag --json takes no value for "policy sign"; see aegisbpf policy sign --help',
  ],
  [
    ["policy", "sign", "f", "--key", "k", "--mode", "loud"],
    'bad value "loud" for --mode; use audit or enforce',
  ],
  [["fail", "boom"], 'bad value "boom" for KIND; use input, refused or other'],
  [
    ["--log-level", "trace", "fail", "input"],
    'bad value "trace" for --log-level; use debug, info, warn or error',
  ],
];

for (const [argv, message] of usageErrors) {
  Deno.test(`parseInvocation() rejects "${argv.join(" ")}" with exit 2 and one line`, async () => {
    const { code, stdout, stderr } = await runTest(argv);
    assert.equal(code, 2);
    assert.equal(stdout, "");
    assert.equal(stderr, `aegisbpf: error: ${message}\n`);
  });
}

Deno.test("parseInvocation() reads a flag whose value may be left out, never taking a flag for it", () => {
  const probe = defineCommand({
    name: "probe",
    summary: "a command with an optional-value flag",
    options: {
      areas: { type: "string", optionalValue: true, valueName: "AREAS", description: "which areas" },
      json: { type: "boolean", description: "json" },
    },
    args: [],
    run: () => Promise.resolve(0),
  });
  const flags = (...argv: string[]) => parseInvocation(["probe", ...argv], [probe]).flags;
  assert.deepEqual(flags("--areas"), { areas: "" });
  assert.deepEqual(flags("--areas", "egress,bind"), { areas: "egress,bind" });
  assert.deepEqual(flags("--areas=egress"), { areas: "egress" });
  assert.deepEqual(flags("--areas", "--json"), { areas: "", json: true });
  assert.deepEqual(flags("--json"), { json: true });
});
