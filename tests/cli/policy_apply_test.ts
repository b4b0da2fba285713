/**
 * `policy apply|show|history|rollback|diff` and `explain` as a user runs them, where no kernel is needed:
 * checks that refuse before the kernel, --dry-run, and the read-only commands over a history made here.
 * Applying for real is in tests/host/policy_apply_test.ts.
 */
import assert from "node:assert/strict";
import { appendHistory } from "../../lib/state/history.ts";
import { type Scratch, scratch } from "./cli.ts";
import { rootTest } from "../support/privileged.ts";

const policy = (version: number, cidr: string, extra = "") =>
  `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: testnet
  version: ${version}
spec:
  mode: enforce
  network:
    egress:
      deny:
        - { id: doc, cidr: ${cidr} }
${extra}`;

const V1 = policy(1, "192.0.2.1/32");
const V2 = policy(2, "192.0.2.2/32", "    bind:\n      deny: [{ id: irc, port: 6667, protocol: tcp }]\n");

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return new Uint8Array(digest).toHex();
}

/** Two applied entries, as apply would have left them: V1 then V2. */
async function withHistory(s: Scratch): Promise<void> {
  for (const [text, version] of [[V1, 1], [V2, 2]] as const) {
    appendHistory(s.stateDir, {
      uid: 0,
      source: `v${version}.yaml`,
      kind: "policy",
      name: "testnet",
      version,
      sha256: await sha256(text),
      outcome: "applied",
      content: text,
    });
  }
}

Deno.test("policy apply of a missing file exits 2 naming it", async () => {
  await using s = await scratch();
  const { code, stderr } = await s.run(["policy", "apply", "missing.yaml"]);
  assert.equal(code, 2);
  assert.equal(stderr, "aegisbpf: error: missing.yaml: no such file\n");
});

Deno.test("policy apply of an invalid policy exits 2 with FILE:LINE:COL and records nothing", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/bad.yaml`, V1.replace("version: 1", "version: 0"));
  const { code, stderr } = await s.run(["policy", "apply", "bad.yaml"]);
  assert.equal(code, 2);
  assert.match(stderr, /^aegisbpf: error: bad\.yaml:5:12: metadata\.version: /);
  const history = await s.run(["policy", "history", "--json"]);
  assert.equal(history.stdout, "[]\n");
});

Deno.test("policy apply --sha256 that does not match the bytes exits 2", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/p.yaml`, V1);
  const { code, stderr } = await s.run(["policy", "apply", "p.yaml", "--sha256", "0".repeat(64)]);
  assert.equal(code, 2);
  assert.match(
    stderr,
    new RegExp(`sha256 mismatch: expected 0{64}, the bytes read hash to ${await sha256(V1)}`),
  );
  const malformed = await s.run(["policy", "apply", "p.yaml", "--sha256", "abc"]);
  assert.equal(malformed.code, 2);
});

Deno.test("policy apply of an unsigned policy is refused with exit 3 where signatures are required", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/p.yaml`, V1);
  const flag = await s.run(["policy", "apply", "p.yaml", "--require-signature", "--dry-run"]);
  assert.equal(flag.code, 3);
  assert.match(flag.stderr, /Refused p\.yaml: unsigned policy, and signatures are required/);
  await Deno.writeTextFile(`${s.configDir}/config.yaml`, "requireSignature: true\n");
  const config = await s.run(["policy", "apply", "p.yaml", "--dry-run"]);
  assert.equal(config.code, 3);
});

Deno.test("policy apply --dry-run checks a signed bundle and needs no kernel; a replay exits 3", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/p.yaml`, V1);
  assert.equal((await s.run(["keys", "gen", "--out", "release"])).code, 0);
  assert.equal((await s.run(["keys", "add", "release.pub"])).code, 0);
  await s.run(["policy", "sign", "p.yaml", "--key", "release.key", "--out", "p.bundle"]);
  const ok = await s.run(["policy", "apply", "p.bundle", "--require-signature", "--dry-run"]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^would apply policy testnet version 1 .*signed by [0-9a-f]{16}\n/);
  await Deno.writeTextFile(`${s.stateDir}/version_counter`, "1\n");
  const replay = await s.run(["policy", "apply", "p.bundle", "--dry-run"]);
  assert.equal(replay.code, 3);
  assert.match(replay.stderr, /anti-rollback counter 1/);
});

Deno.test("policy apply --dry-run prints the summary and each change, and touches nothing", async () => {
  await using s = await scratch();
  await withHistory(s);
  await Deno.writeTextFile(`${s.dir}/p.yaml`, V1);
  const { code, stdout, stderr } = await s.run(["policy", "apply", "p.yaml", "--dry-run"]);
  assert.equal(code, 0, stderr);
  assert.equal(
    stdout,
    `would apply policy testnet version 1 (sha256 ${await sha256(V1)}): mode enforce; rules: egress 1\n` +
      `  ~ network.egress.deny doc {"cidr":"192.0.2.2/32"} -> {"cidr":"192.0.2.1/32"}\n` +
      `  - network.bind.deny irc {"port":6667,"protocol":"tcp"}\n`,
  );
  assert.deepEqual([...Deno.readDirSync(`${s.dir}/bpffs`)], []);
  const history = JSON.parse((await s.run(["policy", "history", "--json"])).stdout);
  assert.equal(history.length, 2);
});

Deno.test("policy apply refuses a lock-out risk with exit 3 listing it, and --force lets it through", async () => {
  await using s = await scratch();
  // Denying the running binary (here: deno) is denying the survival set.
  const self = `  exec:\n    deny:\n      - { id: self, path: ${Deno.execPath()} }\n  network:`;
  await Deno.writeTextFile(`${s.dir}/p.yaml`, V1.replace("  network:", self));
  const refused = await s.run(["policy", "apply", "p.yaml", "--dry-run"]);
  assert.equal(refused.code, 3, refused.stderr);
  assert.match(refused.stderr, /^p\.yaml:\d+:\d+: (warning|error): rule self: /m);
  assert.match(refused.stderr, /aegisbpf: error: Refused p\.yaml: 1 lock-out risk \(listed above\)/);
  // --allow-partial too: the dry run checks what the apply checks, and exec only audits on some kernels.
  const forced = await s.run(["policy", "apply", "p.yaml", "--dry-run", "--force", "--allow-partial"]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /^would apply policy testnet version 1 /);
});

Deno.test("policy history lists every entry with seq, time, outcome, name, version, sha256 prefix, source", async () => {
  await using s = await scratch();
  await withHistory(s);
  const { code, stdout } = await s.run(["policy", "history"]);
  assert.equal(code, 0);
  const lines = stdout.trimEnd().split("\n");
  assert.match(lines[0]!, /^SEQ\s+TIME\s+OUTCOME\s+NAME\s+VERSION\s+SHA256\s+SOURCE\s+SIGNER$/);
  assert.match(
    lines[1]!,
    new RegExp(
      `^1\\s+\\S+Z\\s+applied\\s+testnet\\s+1\\s+${(await sha256(V1)).slice(0, 12)}\\s+v1\\.yaml\\s+-$`,
    ),
  );
  assert.match(lines[2]!, /^2\s+\S+Z\s+applied\s+testnet\s+2\s+[0-9a-f]{12}\s+v2\.yaml\s+-$/);
});

Deno.test("policy show prints the applied entry and its text; with no history it says so", async () => {
  await using s = await scratch();
  const empty = await s.run(["policy", "show"]);
  assert.equal(empty.code, 0);
  assert.match(empty.stderr, /no policy applied yet/);
  await withHistory(s);
  const { code, stdout } = await s.run(["policy", "show"]);
  assert.equal(code, 0);
  assert.match(stdout, /^# seq: 2\n/);
  assert.match(stdout, /# sha256: [0-9a-f]{64}\n/);
  assert.ok(stdout.endsWith(V2), stdout);
  const json = JSON.parse((await s.run(["policy", "show", "--json"])).stdout);
  assert.equal(json.applied.seq, 2);
  assert.equal(json.policy, V2);
});

Deno.test("policy diff prints added, removed and changed rules and settings against the applied policy", async () => {
  await using s = await scratch();
  await withHistory(s);
  const candidate = policy(3, "192.0.2.2/32", "      allow:\n        - { id: ok, cidr: 192.0.2.3/32 }\n")
    .replace("mode: enforce", "mode: audit");
  await Deno.writeTextFile(`${s.dir}/c.yaml`, candidate);
  const { code, stdout } = await s.run(["policy", "diff", "c.yaml"]);
  assert.equal(code, 0);
  assert.match(
    stdout,
    /^c\.yaml against history entry 2: policy testnet version 2 \(sha256 [0-9a-f]{12}\): 3 changes\n/,
  );
  const lines = stdout.trimEnd().split("\n").slice(1);
  assert.deepEqual(lines, [
    `  ~ mode "enforce" -> "audit"`,
    `  + network.egress.allow ok {"cidr":"192.0.2.3/32"}`,
    `  - network.bind.deny irc {"port":6667,"protocol":"tcp"}`,
  ]);
  await Deno.writeTextFile(`${s.dir}/same.yaml`, V2);
  const same = await s.run(["policy", "diff", "same.yaml"]);
  assert.match(same.stdout, /: no changes\n$/);
});

Deno.test("explain names the deciding rule under the applied policy or --policy FILE, and reads stdin", async () => {
  await using s = await scratch();
  const connect = (daddr: string) =>
    JSON.stringify({ type: "net.connect", net: { family: "ipv4", protocol: "tcp", daddr, dport: 80 } });
  const none = await s.run(["explain", connect("192.0.2.2")]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /No policy applied to explain against; give --policy FILE/);
  await withHistory(s);
  const applied = await s.run(["explain", connect("192.0.2.2")]);
  assert.equal(applied.code, 0, applied.stderr);
  assert.equal(
    applied.stdout,
    "net.connect: deny by rule doc under applied policy testnet version 2 (history entry 2)\n",
  );
  await Deno.writeTextFile(`${s.dir}/p.yaml`, V1);
  const lines = [
    connect("192.0.2.2"),
    JSON.stringify({ type: "net.bind", net: { protocol: "tcp", sport: 6667 } }),
  ];
  const file = await s.run(["explain", "-", "--policy", "p.yaml", "--json"], {
    stdin: lines.join("\n") + "\n",
  });
  assert.equal(file.code, 0, file.stderr);
  const answers = file.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
  assert.deepEqual(answers.map((a) => [a.type, a.decision, a.ruleName]), [
    ["net.connect", "allow", undefined],
    ["net.bind", "allow", undefined],
  ]);
  const bad = await s.run(["explain", '{"type":"net.connect","net":{"protocol":"tcp"}}']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /a net\.connect event needs net\.daddr/);
});

Deno.test("policy rollback with no earlier policy, and a bad --to, exit 2", async () => {
  await using s = await scratch();
  const nothing = await s.run(["policy", "rollback"]);
  assert.equal(nothing.code, 2);
  assert.match(nothing.stderr, /Nothing to roll back to/);
  const bad = await s.run(["policy", "rollback", "--to", "xyz"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /Invalid history reference "xyz"/);
});

Deno.test("policy rollback verifies a stored bundle again against the keys trusted now (exit 2)", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/p.yaml`, V1);
  assert.equal((await s.run(["keys", "gen", "--out", "release"])).code, 0);
  assert.equal((await s.run(["keys", "add", "release.pub"])).code, 0);
  await s.run(["policy", "sign", "p.yaml", "--key", "release.key", "--out", "p.bundle"]);
  const bundle = await Deno.readTextFile(`${s.dir}/p.bundle`);
  const common = { uid: 0, name: "testnet", outcome: "applied" } as const;
  appendHistory(s.stateDir, {
    ...common,
    source: "p.bundle",
    kind: "bundle",
    version: 1,
    sha256: await sha256(V1),
    content: bundle,
  });
  appendHistory(s.stateDir, {
    ...common,
    source: "v2.yaml",
    kind: "policy",
    version: 2,
    sha256: await sha256(V2),
    content: V2,
  });
  const keyid = JSON.parse((await s.run(["keys", "list", "--json"])).stdout)[0].keyid;
  assert.equal((await s.run(["keys", "remove", keyid])).code, 0);
  const untrusted = await s.run(["policy", "rollback", "--no-wait"]);
  assert.equal(untrusted.code, 2, untrusted.stderr);
  assert.match(untrusted.stderr, /a signed bundle, but no trusted keys in /);
  assert.equal((await s.run(["keys", "gen", "--out", "other"])).code, 0);
  assert.equal((await s.run(["keys", "add", "other.pub"])).code, 0);
  const other = await s.run(["policy", "rollback", "--to", "1"]);
  assert.equal(other.code, 2);
  assert.match(other.stderr, /Bad signature in bundle history entry 1: key [0-9a-f]{64} is not trusted/);
  assert.equal(JSON.parse((await s.run(["policy", "history", "--json"])).stdout).length, 2);
});

rootTest(
  "policy apply says when PID 1's executable could not be checked (no CAP_SYS_PTRACE), and applies",
  async () => {
    await using s = await scratch();
    const file = `  files:\n    deny:\n      - { id: hostname, path: /etc/hostname }\n  network:`;
    await Deno.writeTextFile(`${s.dir}/p.yaml`, V1.replace("  network:", file));
    // Root without CAP_SYS_PTRACE may not read /proc/1/exe: systemd has capabilities this process lacks.
    const { code, stdout, stderr } = await new Deno.Command("setpriv", {
      args: [
        "--bounding-set=-sys_ptrace",
        Deno.execPath(),
        "run",
        "--allow-all",
        new URL("../../main.ts", import.meta.url).pathname,
        "policy",
        "apply",
        "p.yaml",
        "--dry-run",
        // The dry run checks enforceability as the apply does; file rules only audit on some kernels.
        "--allow-partial",
      ],
      cwd: s.dir,
      env: {
        AEGISBPF_CONFIG_DIR: s.configDir,
        AEGISBPF_STATE_DIR: s.stateDir,
        AEGISBPF_BPFFS: `${s.dir}/bpffs`,
      },
    }).output();
    const [out, err] = [new TextDecoder().decode(stdout), new TextDecoder().decode(stderr)];
    assert.equal(code, 0, err);
    assert.match(
      err,
      /^p\.yaml:\d+:\d+: warning: rule hostname: cannot read \/proc\/1\/exe .*\[survival-unchecked\]$/m,
    );
    assert.match(out, /^would apply policy testnet version 1 /);
  },
);
