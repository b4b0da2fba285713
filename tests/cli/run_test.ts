/**
 * `run` refusals and usage errors, through the real command: each fails before the kernel is touched (no
 * pins, no agent.json, no history). The agent itself runs in tests/host/run_agent_test.ts.
 */
import assert from "node:assert/strict";
import { type Scratch, scratch } from "./cli.ts";

function untouched(s: Scratch): void {
  assert.deepEqual([...Deno.readDirSync(`${s.dir}/bpffs`)], [], "nothing pinned");
  // The agent lock and the state lock are taken first (and left, empty, as every command leaves them).
  const written = [...Deno.readDirSync(s.stateDir)].map((entry) => entry.name).sort();
  assert.deepEqual(
    written.filter((name) => name !== "agent.lock" && name !== "lock"),
    [],
    "no state written",
  );
}

async function write(s: Scratch, name: string, text: string): Promise<string> {
  await Deno.writeTextFile(`${s.dir}/${name}`, text);
  return name;
}

const POLICY = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: t, version: 1 }
spec:
  mode: enforce
`;

Deno.test("run --help names every flag and exits 0", async () => {
  await using s = await scratch();
  const result = await s.run(["run", "--help"]);
  assert.equal(result.code, 0);
  for (
    const flag of [
      "--audit",
      "--enforce",
      "--allow-partial",
      "--policy FILE",
      "--ingress IFACE",
      "--deadman DUR",
    ]
  ) {
    assert.ok(result.stdout.includes(flag), flag);
  }
  assert.equal(result.stderr, "");
});

Deno.test("run refuses bad flags with exit 2 and one line naming the flag", async () => {
  await using s = await scratch();
  const cases: [string[], RegExp][] = [
    [["--audit", "--enforce"], /^aegisbpf: error: --audit and --enforce exclude each other: pick one\n$/],
    [["--deadman", "soon"], /^aegisbpf: error: --deadman "soon" is not a duration/],
    [["--deadman", "0s"], /^aegisbpf: error: --deadman must be longer than zero/],
    [["--ingress", "nosuch-if0"], /^aegisbpf: error: --ingress nosuch-if0: no such network interface here/],
    [["--bogus"], /^aegisbpf: error: .*--bogus/],
    [["extra"], /^aegisbpf: error: .*extra/],
    [["--policy"], /^aegisbpf: error: .*--policy/],
  ];
  for (const [args, expected] of cases) {
    const result = await s.run(["run", ...args]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, expected, args.join(" "));
    assert.equal(result.stdout, "");
  }
  untouched(s);
});

Deno.test("run --policy with a missing or invalid file exits 2 naming FILE:LINE:COL", async () => {
  await using s = await scratch();
  const missing = await s.run(["run", "--policy", "nope.yaml"]);
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /nope\.yaml/);
  const bad = await write(s, "bad.yaml", POLICY.replace("mode: enforce", "mode: enforce\n  colour: red"));
  const invalid = await s.run(["run", "--policy", bad]);
  assert.equal(invalid.code, 2, invalid.stderr);
  assert.match(invalid.stderr, /^aegisbpf: error: bad\.yaml:6:3: .*colour/);
  const json = await s.run(["run", "--policy", bad, "--log-format", "json"]);
  assert.equal(json.code, 2);
  assert.equal(JSON.parse(json.stderr).exitCode, 2);
  untouched(s);
});

Deno.test("run --enforce on the embedded default audit policy is refused as bad input (exit 2)", async () => {
  await using s = await scratch();
  const result = await s.run(["run", "--enforce"]);
  assert.equal(result.code, 2, result.stderr);
  assert.match(
    result.stderr,
    /--enforce needs a policy: the embedded default only audits; pass --policy FILE/,
  );
  untouched(s);
});

Deno.test("run refuses a policy that locks out the host (exit 3), pointing at policy apply --force", async () => {
  await using s = await scratch();
  const shell = Deno.realPathSync("/bin/sh");
  const file = await write(
    s,
    "lockout.yaml",
    POLICY + `  exec:\n    deny: [{ id: no-sh, path: ${shell} }]\n`,
  );
  const result = await s.run(["run", "--policy", file]);
  assert.equal(result.code, 3, result.stderr);
  assert.match(result.stderr, /^aegisbpf: error: Refused lockout\.yaml: .*no-sh.*policy apply --force/);
  untouched(s);
});

Deno.test("run reads <config-dir>/policy.yaml and reports its errors with its path", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.configDir}/policy.yaml`, "apiVersion: aegisbpf.io/v1\nkind: Nope\n");
  const result = await s.run(["run"]);
  assert.equal(result.code, 2, result.stderr);
  assert.ok(result.stderr.includes(`${s.configDir}/policy.yaml`), result.stderr);
  untouched(s);
});

Deno.test("run with a rule naming a missing path, cgroup or interface exits 2 naming the rule, before loading anything", async () => {
  await using s = await scratch();
  const cases: [string, RegExp][] = [
    [`  files: { deny: [{ id: gone, path: ${s.dir}/nope }] }\n`, /Rule gone: .*nope does not exist/],
    [`  scope: { cgroups: [/no-such-aegisbpf.slice] }\n`, /Cgroup \/no-such-aegisbpf\.slice does not exist/],
    [
      `  network:\n    ingress:\n      interfaces: [nosuch-if9]\n      deny: [{ cidr: 192.0.2.0/24 }]\n`,
      /nosuch-if9/,
    ],
  ];
  for (const [body, expected] of cases) {
    const file = await write(s, "p.yaml", POLICY + body);
    const result = await s.run(["run", "--policy", file]);
    assert.equal(result.code, 2, `${body}: ${result.stderr}`);
    assert.match(result.stderr, expected);
    assert.equal(result.stdout, "");
  }
  untouched(s);
});
