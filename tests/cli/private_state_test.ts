/**
 * What `run` and key loading say about directories and keys other users may change, through the real
 * command; none of it needs the kernel: the refusals come before anything is loaded.
 */

import assert from "node:assert/strict";
import { type Scratch, scratch } from "./cli.ts";

const POLICY = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: private, version: 1 }
spec:
  mode: audit
`;

for (const which of ["state", "config"] as const) {
  Deno.test(`run refuses (exit 3) a world-writable ${which} directory, naming it and the fix`, async () => {
    await using s = await scratch();
    const dir = which === "state" ? s.stateDir : s.configDir;
    Deno.chmodSync(dir, 0o777);
    const result = await s.run(["run", "--audit", "--api", "none"]);
    assert.equal(result.code, 3, result.stderr);
    assert.equal(
      result.stderr,
      `aegisbpf: error: Refused to run with the ${which} directory: ${dir} is world-writable (mode 0777): ` +
        `other users can change what aegisbpf trusts; fix it with: chmod 0700 ${dir}\n`,
    );
  });
}

Deno.test("run warns about a state directory others may enter, naming it and the fix, and goes on", async () => {
  await using s = await scratch();
  Deno.chmodSync(s.stateDir, 0o755);
  Deno.chmodSync(s.configDir, 0o700);
  const result = await s.run(["run", "--audit", "--api", "none"]);
  assert.notEqual(result.code, 3, result.stderr);
  assert.ok(
    result.stderr.startsWith(
      `aegisbpf: warn: ${s.stateDir} can be read or entered by other users (mode 0755): they can read what it ` +
        `holds and open its files; fix it with: chmod 0700 ${s.stateDir}\n`,
    ),
    result.stderr,
  );
});

Deno.test("run refuses (exit 3) a group-writable trusted keys directory", async () => {
  await using s = await scratch();
  Deno.mkdirSync(`${s.configDir}/keys`, { mode: 0o700 });
  Deno.chmodSync(`${s.configDir}/keys`, 0o770);
  const result = await s.run(["run", "--audit", "--api", "none"]);
  assert.equal(result.code, 3, result.stderr);
  assert.match(
    result.stderr,
    /Refused to run with the trusted keys directory: .*keys is group-writable \(mode 0770\)/,
  );
});

async function signedBundle(s: Scratch): Promise<string> {
  await Deno.writeTextFile(`${s.dir}/p.yaml`, POLICY);
  for (
    const args of [
      ["keys", "gen", "--out", "release"],
      ["keys", "add", "release.pub"],
      ["policy", "sign", "p.yaml", "--key", "release.key", "--out", "p.bundle"],
    ]
  ) {
    const result = await s.run(args);
    assert.equal(result.code, 0, result.stderr);
  }
  return `${s.configDir}/keys/${[...Deno.readDirSync(`${s.configDir}/keys`)][0]!.name}`;
}

Deno.test("keys add makes the keys directory 0700 and the key 0600", async () => {
  await using s = await scratch();
  const key = await signedBundle(s);
  assert.equal(Deno.statSync(`${s.configDir}/keys`).mode! & 0o777, 0o700);
  assert.equal(Deno.statSync(key).mode! & 0o777, 0o600);
});

Deno.test("policy verify refuses (exit 3) a trusted key file others may write, naming it and the fix", async () => {
  await using s = await scratch();
  const key = await signedBundle(s);
  Deno.chmodSync(key, 0o666);
  const refused = await s.run(["policy", "verify", "p.bundle"]);
  assert.equal(refused.code, 3, refused.stderr);
  assert.equal(
    refused.stderr,
    `aegisbpf: error: Refused trusted key: ${key} is world-writable (mode 0666): other users can change what ` +
      `aegisbpf trusts; fix it with: chmod 0600 ${key}\n`,
  );
  Deno.chmodSync(key, 0o644);
  const verified = await s.run(["policy", "verify", "p.bundle"]);
  assert.equal(verified.code, 0, verified.stderr);
});

Deno.test("a command taking the state lock narrows a 0644 lock file an older version left to 0600", async () => {
  await using s = await scratch();
  Deno.writeTextFileSync(`${s.stateDir}/lock`, "", { mode: 0o644 });
  Deno.chmodSync(`${s.stateDir}/lock`, 0o644);
  const result = await s.run(["policy", "rollback"]);
  assert.match(result.stderr, /Nothing to roll back to/);
  assert.equal(Deno.statSync(`${s.stateDir}/lock`).mode! & 0o777, 0o600);
});
