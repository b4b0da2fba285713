/**
 * `exec.allow: [{ trust: dpkg }]` on this host, against a private dpkg database (DPKG_ADMINDIR, dpkg's own
 * variable) whose packages' files live in the test's directory: `policy apply` trusts the files whose MD5
 * matches and lists the changed ones; a missing database is bad input (exit 2) and nothing is applied; the
 * agent resolves the entry again on SIGUSR2 (what the package's dpkg hook sends) and flips once to trust
 * a package installed since. Exec is audit-only here (no BPF-LSM): the policies are in audit mode.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { PACKAGING } from "../packaging/unit_file.ts";
import { md5Files, md5OfFile } from "../../lib/dpkg/hash.ts";
import { fileIdentity } from "../../lib/kernel/resolve.ts";
import { readApplied } from "../../lib/state/apply_state.ts";
import { listHistory } from "../../lib/state/history.ts";
import { InodeSet } from "../../lib/state/inode_set.ts";
import { aegisbpf } from "../cli/cli.ts";
import { type Host, policy, spawn, withHost, writePolicy } from "../support/agent_host.ts";
import { rootTest } from "../support/privileged.ts";

const md5 = (path: string) => createHash("md5").update(Deno.readFileSync(path)).digest("hex");

/** Installs package `name` in the private database: `files` (absolute paths) with their MD5 now. */
function install(admin: string, name: string, files: string[]): void {
  Deno.mkdirSync(`${admin}/info`, { recursive: true });
  Deno.writeTextFileSync(
    `${admin}/status`,
    `Package: ${name}\nStatus: install ok installed\nArchitecture: amd64\n\n`,
    { append: true },
  );
  const lines = files.map((path) => `${md5(path)}  ${path.slice(1)}\n`).join("");
  Deno.writeTextFileSync(`${admin}/info/${name}.md5sums`, lines);
}

/** A copy of /usr/bin/true at `path` (an ELF program). */
function program(path: string): string {
  Deno.copyFileSync(Deno.realPathSync("/usr/bin/true"), path);
  Deno.chmodSync(path, 0o755);
  return path;
}

const TRUST = "  exec:\n    default: deny\n    allow:\n      - { id: pkgs, trust: dpkg }\n";

/** The inodes applied.json records as allowed for rule `rule`, as "dev:ino". */
function allowedInodes(host: Host, rule: string): Set<string> {
  // One group per ctime stamp: each trusted file is stamped with its own.
  const entries = readApplied(host.stateDir)?.allowed?.filter((allowed) => allowed.rule === rule) ?? [];
  const inodes = entries.flatMap((entry) => [...new InodeSet(entry.inodes).unseen()]);
  return new Set(inodes.map(({ dev, ino }) => `${dev}:${ino}`));
}

const identity = (path: string) => {
  const { dev, ino } = fileIdentity(path, Deno.readTextFileSync("/proc/self/mountinfo"));
  return `${dev}:${ino}`;
};

rootTest(
  "[root] policy apply with trust: dpkg trusts the matching files, lists a changed one, and refuses a missing database (2)",
  async () => {
    await withHost(async (host) => {
      const admin = `${host.dir}/dpkg`;
      const tool = program(`${host.dir}/tool`);
      const changed = program(`${host.dir}/changed`);
      install(admin, "tool", [tool, changed]);
      Deno.writeFileSync(changed, new Uint8Array([0]), { append: true });
      const file = writePolicy(host, "p.yaml", policy(host, TRUST, { mode: "audit" }));
      const env = { ...host.env, DPKG_ADMINDIR: admin };

      const missing = await aegisbpf(["policy", "apply", "--force", file], {
        env: { ...env, DPKG_ADMINDIR: `${host.dir}/none` },
      });
      assert.equal(missing.code, 2, missing.stderr);
      assert.match(missing.stderr, new RegExp(`${host.dir}/none/status does not exist: nothing was applied`));
      assert.equal(readApplied(host.stateDir), undefined, "nothing applied");

      // A dry run says the same, and applies nothing.
      const dry = await aegisbpf(["policy", "apply", "--dry-run", "--force", "--json", file], { env });
      assert.equal(dry.code, 0, dry.stderr);
      assert.deepEqual(JSON.parse(dry.stdout).trust.untrusted, [{
        path: changed,
        package: "tool",
        reason: "md5-mismatch",
      }]);
      assert.equal(readApplied(host.stateDir), undefined, "a dry run applies nothing");

      const applied = await aegisbpf(["policy", "apply", "--force", "--json", file], { env });
      assert.equal(applied.code, 0, applied.stderr);
      const summary = JSON.parse(applied.stdout);
      assert.equal(summary.trust.trusted, 1);
      assert.deepEqual(summary.trust.untrusted, [{ path: changed, package: "tool", reason: "md5-mismatch" }]);
      const inodes = allowedInodes(host, "pkgs");
      assert.ok(inodes.has(identity(tool)), "the matching file is allowed by inode");
      assert.ok(!inodes.has(identity(changed)), "the changed file is not");
      assert.ok(Deno.statSync(`${host.stateDir}/dpkg_trust.json`).isFile, "the cache is kept");

      // The text summary names the untrusted file (a new version: not the policy in force).
      writePolicy(host, "p.yaml", policy(host, TRUST, { mode: "audit", version: 2 }));
      const text = await aegisbpf(["policy", "apply", "--force", file], { env });
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /trust: dpkg: 1 files trusted from 1 installed packages/);
      assert.match(text.stdout, new RegExp(`untrusted ${changed} \\(tool: md5-mismatch\\)`));
    });
  },
);

rootTest(
  "[root] SIGUSR2 (the dpkg hook) makes the agent resolve trust: dpkg again: a package installed since is trusted in one flip",
  async () => {
    await withHost(async (host) => {
      const admin = `${host.dir}/dpkg`;
      const tool = program(`${host.dir}/tool`);
      install(admin, "tool", [tool]);
      const file = writePolicy(host, "p.yaml", policy(host, TRUST, { mode: "audit" }));
      const env = { ...host.env, DPKG_ADMINDIR: admin };
      const applied = await aegisbpf(["policy", "apply", "--force", file], { env });
      assert.equal(applied.code, 0, applied.stderr);
      await using agent = spawn(host, [], { DPKG_ADMINDIR: admin });
      await agent.ready();
      const generation = readApplied(host.stateDir)!.generation;

      const added = program(`${host.dir}/added`);
      install(admin, "added", [added]);
      assert.ok(!allowedInodes(host, "pkgs").has(identity(added)), "not trusted before the hook");
      const from = agent.events.length;
      // The hook, as the package's trigger runs it: it finds the agent by its lock.
      const hook = await new Deno.Command(`${PACKAGING}deb/dpkg-hook`, {
        env: { AEGISBPF_STATE_DIR: host.stateDir },
      }).output();
      assert.equal(hook.code, 0);
      const refreshed = await agent.waitFor((event) => event.type === "policy.refreshed", 15_000, from);
      assert.deepEqual(refreshed.rules, ["pkgs"]);
      assert.notEqual(readApplied(host.stateDir)!.generation, generation, "flipped");
      const inodes = allowedInodes(host, "pkgs");
      assert.ok(inodes.has(identity(added)) && inodes.has(identity(tool)));
      assert.equal(listHistory(host.stateDir).length, 1, "a refresh, not a new policy");
    });
  },
);

Deno.test("md5Files() hashes many megabytes in md5sum processes as it does in process, names with spaces too", () => {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-md5-" });
  try {
    const files = [0, 1, 2].map((i) => {
      const path = `${dir}/file ${i}\\x`;
      const bytes = new Uint8Array(15 << 20).map((_, j) => (j * (i + 7)) & 0xff);
      Deno.writeFileSync(path, bytes);
      return { path, size: bytes.length };
    });
    const missing = { path: `${dir}/missing`, size: 1 << 20 };
    const hashed = md5Files([...files, missing]);
    assert.deepEqual(
      [...hashed.entries()].sort(),
      files.map(({ path }) => [path, md5OfFile(path)]).sort(),
      "every readable file, none other",
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
