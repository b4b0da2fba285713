import assert from "node:assert/strict";
import { scratch } from "./cli.ts";

const VALID = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: web-baseline
  version: 7
spec:
  mode: audit
  network:
    egress:
      deny:
        - { id: imds, cidr: 169.254.169.254/32 }
        - { id: again, cidr: 169.254.169.254/32 }
`;

const INVALID = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: web
  version: 0
spec:
  frob: 1
`;

Deno.test("policy validate accepts a valid policy and prints its name, version and sha256", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/p.yaml`, VALID);
  const { code, stdout, stderr } = await s.run(["policy", "validate", "p.yaml"]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^p\.yaml: valid: policy web-baseline version 7, 2 rules, sha256 [0-9a-f]{64}\n$/);
});

Deno.test("policy validate of a bad policy exits 2 with FILE:LINE:COL for every problem", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/bad.yaml`, INVALID);
  const { code, stdout, stderr } = await s.run(["policy", "validate", "bad.yaml"]);
  assert.equal(code, 2);
  const lines = stdout.trimEnd().split("\n");
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^bad\.yaml:5:12: error: metadata\.version: /);
  assert.match(lines[1]!, /^bad\.yaml:7:3: error: spec\.frob: unknown key; /);
  assert.equal(stderr, "aegisbpf: error: bad.yaml: 2 problems; fix them and validate again\n");
});

Deno.test("policy validate --json reports problems with file, line and column fields", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/bad.yaml`, INVALID);
  const { code, stdout } = await s.run(["policy", "validate", "bad.yaml", "--json"]);
  assert.equal(code, 2);
  const report = JSON.parse(stdout);
  assert.equal(report.valid, false);
  assert.deepEqual(
    report.problems.map((p: Record<string, unknown>) => [p.severity, p.file, p.line, p.column]),
    [["error", "bad.yaml", 5, 12], ["error", "bad.yaml", 7, 3]],
  );
});

Deno.test("policy validate of bad input of every kind exits 2 with one line naming the file", async () => {
  await using s = await scratch();
  await Deno.writeFile(`${s.dir}/binary`, new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2]));
  await Deno.writeTextFile(`${s.dir}/empty.yaml`, "");
  for (const name of ["missing.yaml", "binary", "empty.yaml", "."]) {
    const { code, stderr } = await s.run(["policy", "validate", name]);
    assert.equal(code, 2, name);
    assert.equal(stderr.split("\n").length, 2, stderr);
    assert.match(stderr, /^aegisbpf: error: /, name);
    assert.doesNotMatch(stderr, /\n\s+at /, name);
  }
});

Deno.test("policy lint prints warnings with FILE:LINE:COL and the rule, and exits 0 when there are no errors", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/p.yaml`, VALID);
  const { code, stdout, stderr } = await s.run(["policy", "lint", "p.yaml"]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^p\.yaml:12:11: warning: rule again: .* \[duplicate\]\n$/);
  assert.equal(stderr, "aegisbpf: info: p.yaml: no errors, 1 warning\n");
});

Deno.test("policy lint of an invalid policy exits 2 with FILE:LINE:COL", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/bad.yaml`, INVALID);
  const { code, stdout, stderr } = await s.run(["policy", "lint", "bad.yaml"]);
  assert.equal(code, 2);
  assert.match(stdout, /^bad\.yaml:5:12: error: /);
  assert.equal(stderr, "aegisbpf: error: bad.yaml: 2 errors; fix the errors and lint again\n");
});

Deno.test("policy lint exits 2 for a deny path that does not exist", async () => {
  await using s = await scratch();
  const policy = VALID.replace(
    "  network:",
    "  files:\n    deny:\n      - { id: gone, path: /nonexistent/aegisbpf }\n  network:",
  );
  await Deno.writeTextFile(`${s.dir}/p.yaml`, policy);
  const { code, stdout } = await s.run(["policy", "lint", "p.yaml", "--json"]);
  assert.equal(code, 2);
  const { findings } = JSON.parse(stdout);
  assert.deepEqual(findings[0], {
    severity: "error",
    file: "p.yaml",
    line: 10,
    column: 9,
    message: findings[0].message,
    code: "missing-path",
    ruleId: "gone",
  });
});

async function trustNewKey(s: Awaited<ReturnType<typeof scratch>>, prefix = "release"): Promise<string> {
  const gen = await s.run(["keys", "gen", "--out", prefix]);
  assert.equal(gen.code, 0, gen.stderr);
  const add = await s.run(["keys", "add", `${prefix}.pub`]);
  assert.equal(add.code, 0, add.stderr);
  return /^keyid +([0-9a-f]{64})$/m.exec(gen.stdout)![1]!;
}

Deno.test("policy sign then verify round-trips under a trusted key", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/p.yaml`, VALID);
  const keyid = await trustNewKey(s);
  const sign = await s.run(["policy", "sign", "p.yaml", "--key", "release.key", "--out", "p.bundle"]);
  assert.equal(sign.code, 0, sign.stderr);
  assert.equal(sign.stdout, "");
  const verify = await s.run(["policy", "verify", "p.bundle", "--json"]);
  assert.equal(verify.code, 0, verify.stderr);
  const result = JSON.parse(verify.stdout);
  assert.equal(result.keyid, keyid);
  assert.equal(result.name, "web-baseline");
  assert.equal(result.version, 7);
});

Deno.test("policy verify exits 2 for a tampered bundle and 3 for a version at the anti-rollback counter", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/p.yaml`, VALID);
  await trustNewKey(s);
  await s.run(["policy", "sign", "p.yaml", "--key", "release.key", "--out", "p.bundle"]);
  const bundle = JSON.parse(await Deno.readTextFile(`${s.dir}/p.bundle`));
  const payload = atob(bundle.payload).replace("version: 7", "version: 8");
  await Deno.writeTextFile(`${s.dir}/tampered.bundle`, JSON.stringify({ ...bundle, payload: btoa(payload) }));
  const tampered = await s.run(["policy", "verify", "tampered.bundle"]);
  assert.equal(tampered.code, 2);
  assert.match(tampered.stderr, /^aegisbpf: error: Bad signature in bundle tampered\.bundle: /);
  await Deno.writeTextFile(`${s.stateDir}/version_counter`, "7\n");
  const replayed = await s.run(["policy", "verify", "p.bundle"]);
  assert.equal(replayed.code, 3);
  assert.match(replayed.stderr, /anti-rollback counter 7/);
});

Deno.test("policy verify with no trusted key exits 2 and says how to trust one", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/p.yaml`, VALID);
  await s.run(["keys", "gen", "--out", "release"]);
  await s.run(["policy", "sign", "p.yaml", "--key", "release.key", "--out", "p.bundle"]);
  const { code, stderr } = await s.run(["policy", "verify", "p.bundle"]);
  assert.equal(code, 2);
  assert.equal(
    stderr,
    `aegisbpf: error: No trusted keys in ${s.configDir}/keys; trust the signer with aegisbpf keys add FILE\n`,
  );
});

Deno.test("policy sign refuses an invalid policy and a public key with exit 2", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/bad.yaml`, INVALID);
  await Deno.writeTextFile(`${s.dir}/p.yaml`, VALID);
  await s.run(["keys", "gen", "--out", "release"]);
  const invalid = await s.run(["policy", "sign", "bad.yaml", "--key", "release.key", "--out", "b"]);
  assert.equal(invalid.code, 2);
  assert.match(invalid.stderr, /^aegisbpf: error: bad\.yaml:5:12: /);
  const publicKey = await s.run(["policy", "sign", "p.yaml", "--key", "release.pub", "--out", "b"]);
  assert.equal(publicKey.code, 2);
  await assert.rejects(Deno.stat(`${s.dir}/b`), Deno.errors.NotFound);
});

Deno.test("policy sign requires --key and --out", async () => {
  await using s = await scratch();
  const { code, stderr } = await s.run(["policy", "sign", "p.yaml", "--out", "b"]);
  assert.equal(code, 2);
  assert.equal(stderr, 'aegisbpf: error: missing --key for "policy sign"; see aegisbpf policy sign --help\n');
});

Deno.test("policy lint exits 2 for an exe that does not exist, and validate for a bad exe or egress default", async () => {
  await using s = await scratch();
  const rule = (entry: string) =>
    VALID.replace("        - { id: again, cidr: 169.254.169.254/32 }\n", `        - ${entry}\n`);
  await Deno.writeTextFile(
    `${s.dir}/gone.yaml`,
    rule("{ id: gone, cidr: 203.0.113.0/24, exe: /nonexistent/curl }"),
  );
  const lint = await s.run(["policy", "lint", "gone.yaml", "--json"]);
  assert.equal(lint.code, 2);
  const { findings } = JSON.parse(lint.stdout);
  assert.deepEqual(
    findings.map((f: Record<string, unknown>) => [f.severity, f.line, f.column, f.code, f.ruleId]),
    [["error", 12, 11, "missing-path", "gone"]],
  );
  await Deno.writeTextFile(`${s.dir}/rel.yaml`, rule("{ cidr: 10.0.0.0/8, exe: bin/curl }"));
  const relative = await s.run(["policy", "validate", "rel.yaml"]);
  assert.equal(relative.code, 2);
  assert.match(
    relative.stdout,
    /^rel\.yaml:12:36: error: spec\.network\.egress\.deny\[1\]\.exe: exe must be an absolute path/,
  );
  await Deno.writeTextFile(
    `${s.dir}/default.yaml`,
    VALID.replace("    egress:\n", "    egress:\n      default: block\n"),
  );
  const bad = await s.run(["policy", "validate", "default.yaml"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stdout, /^default\.yaml:10:16: error: spec\.network\.egress\.default: /);
});

Deno.test("policy lint refuses files.protect over the state or configuration directory, naming the entry", async () => {
  await using s = await scratch();
  const policy = VALID.replace(
    "  network:",
    `  files:\n    protect:\n      - { id: state, path: ${s.stateDir}, recursive: true }\n` +
      `      - { id: etc, path: ${s.dir}, recursive: true }\n  network:`,
  );
  await Deno.writeTextFile(`${s.dir}/p.yaml`, policy);
  const { code, stdout } = await s.run(["policy", "lint", "p.yaml", "--json"]);
  assert.equal(code, 2);
  const { findings } = JSON.parse(stdout);
  const refused = findings.filter((finding: { code: string }) => finding.code === "protects-own-state");
  assert.deepEqual(
    refused.map((finding: { ruleId: string; line: number; severity: string }) => [
      finding.ruleId,
      finding.line,
      finding.severity,
    ]),
    [["state", 10, "error"], ["etc", 11, "error"], ["etc", 11, "error"]],
    "the state directory, and a recursive entry above both directories",
  );
  assert.match(
    refused[0].message,
    /^rule state: protects \S+\/state, aegisbpf state \(history, applied record\)/,
  );
});
