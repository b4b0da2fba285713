/**
 * `aegisbpf release verify` on a small release made here (no root, no image build): each verdict and exit
 * code. tests/packaging/release_test.ts does the same on a real release.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { generateKeyPair } from "../../lib/policy/keys.ts";
import { signRelease } from "../../lib/release/statement.ts";
import { scratch } from "./cli.ts";

const signer = generateKeyPair();
const FILES = { "aegisbpf_0.1.0_amd64.deb": "the package", "aegis.bpf.o": "the object" };

async function release(dir: string): Promise<void> {
  const subjects = Object.entries(FILES).map(([name, text]) => ({
    name,
    digest: { sha256: createHash("sha256").update(text).digest("hex") },
  }));
  for (const [name, text] of Object.entries(FILES)) await Deno.writeTextFile(`${dir}/${name}`, text);
  await Deno.writeTextFile(
    `${dir}/aegisbpf-0.1.0.intoto.jsonl`,
    signRelease({ product: "aegisbpf", version: "0.1.0", subjects }, signer.privateKeyPem, "k"),
  );
  await Deno.writeTextFile(`${dir}/release.pub`, signer.publicKeyPem);
}

Deno.test("release verify accepts the signed files (--key, or a trusted key) and prints JSON with --json", async () => {
  await using s = await scratch();
  await release(s.dir);
  const ok = await s.run([
    "release",
    "verify",
    "--key",
    "release.pub",
    "aegisbpf_0.1.0_amd64.deb",
    "aegis.bpf.o",
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(
    ok.stdout,
    /^aegisbpf_0\.1\.0_amd64\.deb: OK: sha256 [0-9a-f]{64} matches the aegisbpf 0\.1\.0 release\n/,
  );
  const untrusted = await s.run(["release", "verify", "aegis.bpf.o"]);
  assert.equal(untrusted.code, 2);
  assert.match(untrusted.stderr, /No trusted keys in .*: give the release key with --key FILE/);
  assert.equal((await s.run(["keys", "add", "release.pub"])).code, 0);
  const json = await s.run(["release", "verify", "--json", "aegis.bpf.o"]);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(Object.keys(JSON.parse(json.stdout)), ["file", "ok", "reason"]);
});

Deno.test("release verify exits 1 naming each file that is changed or unnamed, and 2 for bad input", async () => {
  await using s = await scratch();
  await release(s.dir);
  await Deno.writeTextFile(`${s.dir}/aegis.bpf.o`, "the object, changed");
  await Deno.writeTextFile(`${s.dir}/other.deb`, "the package");
  const result = await s.run(["release", "verify", "--key", "release.pub", "aegis.bpf.o", "other.deb"]);
  assert.equal(result.code, 1);
  assert.match(result.stdout, /^aegis\.bpf\.o: FAILED: sha256 [0-9a-f]{64} differs from the statement's/m);
  assert.match(
    result.stdout,
    /^other\.deb: FAILED: other\.deb is not a subject of the aegisbpf 0\.1\.0 statement/m,
  );
  const wrongKey = generateKeyPair();
  await Deno.writeTextFile(`${s.dir}/wrong.pub`, wrongKey.publicKeyPem);
  const wrong = await s.run(["release", "verify", "--key", "wrong.pub", "aegisbpf_0.1.0_amd64.deb"]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stdout, /FAILED: not verified: Bad signature in release envelope/);
  for (
    const [args, pattern] of [
      [["release", "verify", "--key", "release.pub"], /Name at least one release artifact/],
      [["release", "verify", "--key", "release.pub", "missing.deb"], /missing\.deb: no such file/],
      [["release", "verify", "--key", "aegis.bpf.o", "other.deb"], /aegis\.bpf\.o/],
      [
        ["release", "verify", "--key", "release.pub", "--envelope", "other.deb", "other.deb"],
        /Invalid release envelope other\.deb/,
      ],
    ] as const
  ) {
    const bad = await s.run([...args]);
    assert.equal(bad.code, 2, args.join(" "));
    assert.match(bad.stderr, pattern);
  }
  await Deno.writeTextFile(`${s.dir}/second.intoto.jsonl`, "{}");
  const two = await s.run(["release", "verify", "--key", "release.pub", "other.deb"]);
  assert.equal(two.code, 2);
  assert.match(
    two.stderr,
    /More than one \*\.intoto\.jsonl in \.: name the release envelope with --envelope/,
  );
});
