/**
 * `policy apply --dry-run` refuses where the real apply refuses: every kind of refusal is run both ways
 * through the real command, and both must exit with the same code and the same error line. The dry run
 * must leave nothing behind: no history, no pins.
 */
import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { planeStatus } from "../../lib/kernel/load.ts";
import { listHistory } from "../../lib/state/history.ts";
import { type Scratch, scratch } from "../cli/cli.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { rootTest } from "../support/privileged.ts";

const policy = (spec: string, metadata = "") =>
  `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: dry
  version: 3
${metadata}spec:
${spec}`;

const EGRESS = "  network:\n    egress:\n      deny: [{ id: testnet, cidr: 192.0.2.1/32 }]\n";

type Case = {
  name: string;
  /** Writes what the case needs into the scratch; returns the arguments after `policy apply`. */
  setup: (s: Scratch) => Promise<string[]>;
  /** The exit code both must give, and what the error line says. */
  code: number;
  message: RegExp;
  /** What both must also say on stderr (a warning, the risk refused). */
  says?: RegExp;
};

async function signed(s: Scratch, text: string): Promise<string> {
  await Deno.writeTextFile(`${s.dir}/p.yaml`, text);
  assert.equal((await s.run(["keys", "gen", "--out", "release"])).code, 0);
  assert.equal((await s.run(["keys", "add", "release.pub"])).code, 0);
  const sign = await s.run(["policy", "sign", "p.yaml", "--key", "release.key", "--out", "p.bundle"]);
  assert.equal(sign.code, 0, sign.stderr);
  return "p.bundle";
}

async function file(s: Scratch, text: string): Promise<string> {
  await Deno.writeTextFile(`${s.dir}/p.yaml`, text);
  return "p.yaml";
}

/** A login shell (in /etc/shells on Debian): part of the survival set lint and apply protect. */
const shell = Deno.realPathSync("/bin/sh");
const fileAreaEnforces = planeStatus(new Set(["file"]), "auto").status.file.mode === "enforce";

const CASES: Case[] = [
  {
    name: "an enforce policy using an area this kernel only audits",
    setup: async (s) => {
      await Deno.writeTextFile(`${s.dir}/secret`, "x");
      return [
        await file(
          s,
          policy(`  mode: enforce\n  files:\n    deny: [{ id: secret, path: ${s.dir}/secret }]\n`),
        ),
      ];
    },
    // On a kernel where BPF-LSM loads, the policy is enforceable and both apply it.
    code: fileAreaEnforces ? 0 : 3,
    message: fileAreaEnforces
      ? /^$/
      : /Refused: the policy's mode is enforce, but this kernel cannot enforce every area the policy uses: file is audit-only/,
  },
  {
    name: "a lock-out risk (the running binary)",
    setup: async (s) => [
      await file(s, policy(`  mode: enforce\n  exec:\n    deny: [{ id: self, path: ${Deno.execPath()} }]\n`)),
    ],
    code: 3,
    message: /Refused p\.yaml: 1 lock-out risk/,
  },
  {
    name: "the survival set (a login shell)",
    setup: async (s) => [
      await file(s, policy(`  mode: audit\n  exec:\n    deny: [{ id: shell, path: ${shell} }]\n`)),
    ],
    code: 3,
    message: /Refused p\.yaml: \d+ lock-out risks? \(listed above\)/,
  },
  {
    name: "an unsigned policy with --require-signature",
    setup: async (s) => [await file(s, policy(`  mode: enforce\n${EGRESS}`)), "--require-signature"],
    code: 3,
    message: /unsigned policy, and signatures are required/,
  },
  {
    name: "an unsigned policy with requireSignature in config.yaml",
    setup: async (s) => {
      await Deno.writeTextFile(`${s.configDir}/config.yaml`, "requireSignature: true\n");
      return [await file(s, policy(`  mode: enforce\n${EGRESS}`))];
    },
    code: 3,
    message: /unsigned policy, and signatures are required/,
  },
  {
    name: "a bundle not above the anti-rollback counter",
    setup: async (s) => {
      const bundle = await signed(s, policy(`  mode: enforce\n${EGRESS}`));
      await Deno.writeTextFile(`${s.stateDir}/version_counter`, "3\n");
      return [bundle];
    },
    code: 3,
    message: /not greater than the anti-rollback counter 3/,
  },
  {
    name: "a bundle past notAfter",
    setup: async (s) => [
      await signed(s, policy(`  mode: enforce\n${EGRESS}`, "  notAfter: 2020-01-01T00:00:00Z\n")),
    ],
    code: 3,
    message: /expired at 2020-01-01T00:00:00\.000Z \(notAfter\)/,
  },
  {
    name: "a bundle signed by a key no longer trusted",
    setup: async (s) => {
      const bundle = await signed(s, policy(`  mode: enforce\n${EGRESS}`));
      for (const entry of Deno.readDirSync(`${s.configDir}/keys`)) {
        Deno.removeSync(`${s.configDir}/keys/${entry.name}`);
      }
      assert.equal((await s.run(["keys", "gen", "--out", "other"])).code, 0);
      assert.equal((await s.run(["keys", "add", "other.pub"])).code, 0);
      return [bundle];
    },
    code: 2,
    message: /Bad signature in bundle p\.bundle: key [0-9a-f]{64} is not trusted/,
  },
  {
    name: "a deny path that does not exist here",
    setup: async (s) => [
      await file(
        s,
        policy(`  mode: audit\n  files:\n    deny: [{ id: gone, path: ${s.dir}/no-such-file }]\n`),
      ),
    ],
    code: 2,
    message: /no-such-file/,
  },
  {
    name: "files.protect over aegisbpf's own configuration (its trusted keys)",
    setup: async (s) => {
      Deno.mkdirSync(`${s.configDir}/keys`, { recursive: true });
      const protect = `[{ id: keys, path: ${s.configDir}/keys, recursive: true }]`;
      return [await file(s, policy(`  mode: audit\n  files:\n    protect: ${protect}\n`))];
    },
    code: 3,
    message: /Refused p\.yaml: 1 lock-out risk/,
    says: /rule keys: protects \S+, aegisbpf configuration \(trusted keys, break-glass marker\)/,
  },
  {
    name: "files.protect where the file area only audits: applied, saying what is reported",
    setup: async (s) => {
      await Deno.writeTextFile(`${s.dir}/sudoers`, "x");
      return [
        await file(
          s,
          policy(`  mode: audit\n  files:\n    protect: [{ id: sudoers, path: ${s.dir}/sudoers }]\n`),
        ),
      ];
    },
    code: 0,
    message: /^$/,
    says: fileAreaEnforces
      ? /^(?![\s\S]*files\.protect is audit-only)/
      : /files\.protect is audit-only on this kernel \(no BPF-LSM\): the open tracepoints report opens only/,
  },
  {
    name: "a policy the real apply takes",
    setup: async (s) => [await file(s, policy(`  mode: enforce\n${EGRESS}`))],
    code: 0,
    message: /^$/,
  },
];

/** The `aegisbpf: error:` line, or "" when there is none; the clock it quotes left out. */
function errorLine(stderr: string): string {
  const line = stderr.split("\n").find((line) => line.startsWith("aegisbpf: error: ")) ?? "";
  return line.replace(/, it is now \S+$/, "");
}

for (const c of CASES) {
  rootTest(`[root] policy apply --dry-run and the real apply give the same verdict: ${c.name}`, async () => {
    const bpffs = await TestBpffs.mount();
    try {
      await using s = await scratch();
      const env = { env: { AEGISBPF_BPFFS: bpffs.path } };
      const args = await c.setup(s);
      const dry = await s.run(["policy", "apply", ...args, "--dry-run"], env);
      assert.equal(dry.code, c.code, dry.stderr);
      const pinned = [...Deno.readDirSync(bpffs.path)].filter((entry) => entry.name === "aegisbpf");
      assert.deepEqual(pinned, [], "the dry run pinned nothing");
      assert.equal(listHistory(s.stateDir).length, 0, "the dry run recorded nothing");
      if (c.code === 0) assert.match(dry.stdout, /^would apply policy dry version 3 /);
      const real = await s.run(["policy", "apply", ...args], env);
      assert.equal(real.code, c.code, real.stderr);
      assert.match(errorLine(dry.stderr), c.message);
      if (c.says) {
        assert.match(dry.stderr, c.says, "the dry run");
        assert.match(real.stderr, c.says, "the apply");
      }
      assert.equal(errorLine(dry.stderr), errorLine(real.stderr));
      if (c.code !== 0) assert.equal(listHistory(s.stateDir).length, 0, "a refused apply records nothing");
    } finally {
      DataPlane.detach(bpffs.path);
      await bpffs.unmount();
    }
  });
}
