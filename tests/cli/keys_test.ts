import { appendHistory } from "../../lib/state/history.ts";
import assert from "node:assert/strict";
import { scratch } from "./cli.ts";

async function openssl(args: string[], cwd: string): Promise<void> {
  const { success, stderr } = await new Deno.Command("openssl", { args, cwd }).output();
  assert.ok(success, new TextDecoder().decode(stderr));
}

Deno.test("keys gen writes PREFIX.key (0600) and PREFIX.pub and refuses to overwrite them", async () => {
  await using s = await scratch();
  const { code, stdout } = await s.run(["keys", "gen", "--out", "release"]);
  assert.equal(code, 0);
  assert.match(stdout, /^keyid +[0-9a-f]{64}\nprivate +release\.key\npublic +release\.pub\n$/);
  assert.equal((await Deno.stat(`${s.dir}/release.key`)).mode! & 0o777, 0o600);
  const again = await s.run(["keys", "gen", "--out", "release"]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /^aegisbpf: error: .*release\.key already exists/);
});

Deno.test("keys add, list and remove manage the keys under --config-dir", async () => {
  await using s = await scratch();
  const gen = await s.run(["keys", "gen", "--out", "release"]);
  const keyid = /^keyid +([0-9a-f]{64})$/m.exec(gen.stdout)![1]!;
  const add = await s.run(["keys", "add", "release.pub"]);
  assert.equal(add.code, 0);
  assert.match(add.stdout, new RegExp(`^Trusted key ${keyid} `));
  assert.match((await s.run(["keys", "add", "release.pub"])).stdout, /already trusted/);
  const list = await s.run(["keys", "list", "--json"]);
  assert.deepEqual(JSON.parse(list.stdout), [{ file: `${s.configDir}/keys/${keyid}.pub`, keyid }]);
  const text = await s.run(["keys", "list"]);
  assert.match(text.stdout, new RegExp(`^KEYID +FILE\\n${keyid}  ${s.configDir}/keys/${keyid}.pub\\n$`));
  const remove = await s.run(["keys", "remove", keyid.slice(0, 12)]);
  assert.equal(remove.code, 0);
  assert.equal(remove.stdout, `Removed key ${keyid}\n`);
  assert.deepEqual(JSON.parse((await s.run(["keys", "list", "--json"])).stdout), []);
});

Deno.test("keys add trusts an Ed25519 key made by openssl", async () => {
  await using s = await scratch();
  await openssl(["genpkey", "-algorithm", "ed25519", "-out", "ossl.key"], s.dir);
  await openssl(["pkey", "-in", "ossl.key", "-pubout", "-out", "ossl.pub"], s.dir);
  const { code, stderr } = await s.run(["keys", "add", "ossl.pub"]);
  assert.equal(code, 0, stderr);
});

Deno.test("keys add refuses an RSA key, a private key, junk and a missing file with exit 2", async () => {
  await using s = await scratch();
  await openssl(
    ["genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.key"],
    s.dir,
  );
  await openssl(["pkey", "-in", "rsa.key", "-pubout", "-out", "rsa.pub"], s.dir);
  await s.run(["keys", "gen", "--out", "ed"]);
  await Deno.writeTextFile(`${s.dir}/junk.pub`, "not a key\n");
  for (
    const [file, reason] of [["rsa.pub", /RSA/], ["ed.key", /private key/], ["junk.pub", /PEM/], [
      "none.pub",
      /no such/,
    ]] as const
  ) {
    const { code, stdout, stderr } = await s.run(["keys", "add", file]);
    assert.equal(code, 2, file);
    assert.equal(stdout, "");
    assert.match(stderr, /^aegisbpf: error: [^\n]+\n$/, file);
    assert.match(stderr, reason, file);
  }
  assert.deepEqual(JSON.parse((await s.run(["keys", "list", "--json"])).stdout), []);
});

Deno.test("keys remove of an unknown or too short keyid exits 2", async () => {
  await using s = await scratch();
  assert.equal((await s.run(["keys", "remove", "abc"])).code, 2);
  const unknown = await s.run(["keys", "remove", "0123456789abcdef"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^aegisbpf: error: No trusted key 0123456789abcdef in /);
});

Deno.test("the key directory follows --config-dir over AEGISBPF_CONFIG_DIR", async () => {
  await using s = await scratch();
  await s.run(["keys", "gen", "--out", "release"]);
  const other = `${s.dir}/other`;
  assert.equal((await s.run(["keys", "add", "release.pub", "--config-dir", other])).code, 0);
  assert.equal(JSON.parse((await s.run(["keys", "list", "--json"])).stdout).length, 0);
  assert.equal(JSON.parse((await s.run(["--config-dir", other, "keys", "list", "--json"])).stdout).length, 1);
});

const SIGNED = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: signed-web, version: 5 }
spec:
  network:
    egress:
      deny: [{ id: doc, cidr: 192.0.2.1/32 }]
`;

Deno.test("keys remove refuses (exit 3) a key that signed the policy in force, naming it, unless --force", async () => {
  await using s = await scratch();
  const gen = await s.run(["keys", "gen", "--out", "release"]);
  const keyid = /^keyid +([0-9a-f]{64})$/m.exec(gen.stdout)![1]!;
  assert.equal((await s.run(["keys", "add", "release.pub"])).code, 0);
  await Deno.writeTextFile(`${s.dir}/p.yaml`, SIGNED);
  assert.equal(
    (await s.run(["policy", "sign", "p.yaml", "--key", "release.key", "--out", "p.bundle"])).code,
    0,
  );
  const bundle = await Deno.readTextFile(`${s.dir}/p.bundle`);
  appendHistory(s.stateDir, {
    uid: 0,
    source: "p.bundle",
    kind: "bundle",
    name: "signed-web",
    version: 5,
    sha256: "c".repeat(64),
    keyid,
    outcome: "applied",
    content: bundle,
  });
  const refused = await s.run(["keys", "remove", keyid.slice(0, 8)]);
  assert.equal(refused.code, 3);
  assert.equal(refused.stdout, "");
  assert.equal(
    refused.stderr,
    `aegisbpf: error: Refused to remove key ${keyid}: it signed the policy in force, signed-web version 5 ` +
      `(history entry 1); a rollback to it, or the agent's next start or reload, would refuse it. Apply a ` +
      `policy signed by another key first, or pass --force\n`,
  );
  assert.equal(JSON.parse((await s.run(["keys", "list", "--json"])).stdout).length, 1, "the key stays");

  await Deno.copyFile(`${s.dir}/p.bundle`, `${s.configDir}/policy.yaml`);
  const both = await s.run(["keys", "remove", keyid]);
  assert.equal(both.code, 3);
  assert.match(
    both.stderr,
    new RegExp(
      `it signed the policy in force, .* and the configured bundle ${s.configDir}/policy\\.yaml ` +
        `\\(policy signed-web version 5\\);`,
    ),
  );
  const forced = await s.run(["keys", "remove", keyid, "--force"]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(forced.stdout, `Removed key ${keyid}\n`);
  assert.match(forced.stderr, /removing key [0-9a-f]{64} although it signed the policy in force/);
  assert.deepEqual(JSON.parse((await s.run(["keys", "list", "--json"])).stdout), []);
});

Deno.test("keys remove takes a key that signed only an older policy, or a bundle of another key", async () => {
  await using s = await scratch();
  const gen = await s.run(["keys", "gen", "--out", "old"]);
  const keyid = /^keyid +([0-9a-f]{64})$/m.exec(gen.stdout)![1]!;
  assert.equal((await s.run(["keys", "add", "old.pub"])).code, 0);
  for (const [version, signer] of [[1, keyid], [2, undefined]] as const) {
    appendHistory(s.stateDir, {
      uid: 0,
      source: `v${version}`,
      kind: signer ? "bundle" : "policy",
      name: "web",
      version,
      sha256: `${version}`.repeat(64),
      ...(signer ? { keyid: signer } : {}),
      outcome: "applied",
      content: SIGNED,
    });
  }
  const removed = await s.run(["keys", "remove", keyid]);
  assert.equal(removed.code, 0, removed.stderr);
});
