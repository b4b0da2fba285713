import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import { minimal } from "./_testdata.ts";
import { compilePolicy } from "./compile.ts";
import { decide } from "./decide.ts";
import { type LintFacts, lintPolicy, lockoutRisks, type Warning } from "./lint.ts";
import { parsePolicy, parsePolicySource, PolicyError } from "./parse.ts";
import { policySchema } from "./schema.ts";
import { validatePolicy } from "./validate.ts";

const HASH = "a".repeat(64);

/** `spec.exec` lines under a minimal policy (exec starts at line 7). */
const exec = (lines: string) => minimal(`  mode: enforce\n  exec:\n${lines}`);

function refuses(text: string, line: number, column: number, includes: string): void {
  try {
    parsePolicy(text, "p.yaml");
  } catch (error) {
    assert.ok(error instanceof PolicyError && error instanceof InputError, String(error));
    assert.equal(error.message.split(": ")[0], `p.yaml:${line}:${column}`, error.message);
    assert.ok(error.message.includes(includes), `${JSON.stringify(error.message)} lacks ${includes}`);
    return;
  }
  assert.fail("the policy was accepted");
}

Deno.test("parsePolicy() reads exec.default and exec.allow entries of both shapes", () => {
  const policy = parsePolicy(
    exec(
      `    default: deny\n    allow:\n      - { path: /usr/bin, recursive: true }\n` +
        `      - { id: tool, path: /opt/tool, sha256: ${HASH.toUpperCase()} }\n`,
    ),
    "p.yaml",
  );
  assert.equal(policy.spec.exec?.default, "deny");
  assert.deepEqual(policy.spec.exec?.allow, [
    { path: "/usr/bin", recursive: true },
    { id: "tool", path: "/opt/tool", sha256: HASH.toUpperCase() },
  ]);
});

Deno.test("parsePolicy() refuses bad exec allowlist input at FILE:LINE:COL", () => {
  refuses(exec("    default: maybe\n"), 9, 14, "valid values are allow, deny");
  refuses(exec("    allow:\n      - { recursive: true }\n"), 10, 9, "path");
  refuses(exec("    allow:\n      - { path: 7 }\n"), 10, 17, "path");
  refuses(exec("    allow:\n      - { path: usr/bin }\n"), 10, 17, "absolute path");
  refuses(exec("    allow:\n      - { path: /opt/t, sha256: abc }\n"), 10, 33, "64 hex digits");
  refuses(exec(`    allow:\n      - { path: /opt/t, sha256: ${"g".repeat(64)} }\n`), 10, 33, "64 hex digits");
  refuses(exec(`    allow:\n      - { path: /opt/t, sha256: 12 }\n`), 10, 33, "64 hex digits");
  refuses(
    exec(`    allow:\n      - { path: /opt, recursive: true, sha256: ${HASH} }\n`),
    10,
    48,
    "names one file",
  );
  refuses(exec("    allow: /usr/bin\n"), 9, 12, "list");
});

Deno.test("parsePolicy() reads { trust: dpkg } entries, with an id or none", () => {
  const policy = parsePolicy(
    exec("    default: deny\n    allow:\n      - trust: dpkg\n      - { id: pkgs, trust: dpkg }\n"),
    "p.yaml",
  );
  assert.deepEqual(policy.spec.exec?.allow, [{ trust: "dpkg" }, { trust: "dpkg", id: "pkgs" }]);
});

Deno.test("parsePolicy() refuses a trust other than dpkg, and a trust entry with file keys, at the key", () => {
  refuses(exec("    allow:\n      - trust: rpm\n"), 10, 16, "trust names a package database: dpkg");
  refuses(exec("    allow:\n      - trust: 3\n"), 10, 16, "dpkg");
  refuses(
    exec("    allow:\n      - { path: /usr/bin, trust: dpkg }\n"),
    10,
    17,
    "a trust entry takes only id",
  );
  refuses(
    exec(`    allow:\n      - { trust: dpkg, sha256: ${HASH} }\n`),
    10,
    32,
    "a trust entry takes only id",
  );
  // Neither a path nor trust: the entry is named.
  refuses(exec("    allow:\n      - { id: x }\n"), 10, 9, "path is required");
});

Deno.test("validatePolicy() decides exec.allow entries as zod does, on the fast path and off it", () => {
  const cases: unknown[] = [
    { path: "/bin" },
    { path: "/bin", recursive: true, optional: true, maxFiles: 10 },
    { sha256: HASH, path: "/bin/sh", id: "sh" },
    { path: "/bin/sh", sha256: "x" },
    { path: "/bin", recursive: true, sha256: HASH },
    { path: "/bin", trust: "dpkg" },
    { trust: "dpkg" },
    { id: "d", trust: "dpkg" },
    { trust: "dpkg", id: "d" },
    { trust: "rpm" },
    { trust: "dpkg", recursive: true },
    { id: "d" },
    { path: "/bin", extra: 1 },
  ];
  for (const entry of cases) {
    const doc = {
      apiVersion: "aegisbpf.io/v1",
      kind: "Policy",
      metadata: { name: "t", version: 1 },
      spec: { exec: { default: "deny", allow: [entry, { path: "/usr/lib", recursive: true }] } },
    };
    const fast = validatePolicy(structuredClone(doc), { reportInput: true });
    const zod = policySchema.safeParse(structuredClone(doc), { reportInput: true });
    assert.equal(fast.success, zod.success, JSON.stringify(entry));
    if (zod.success) assert.equal(JSON.stringify(fast.data), JSON.stringify(zod.data));
    else assert.equal(JSON.stringify(fast.error?.issues), JSON.stringify(zod.error.issues));
  }
});

const ALLOWLIST = exec(
  `    default: deny\n    deny: [{ id: nc, path: /usr/bin/nc }]\n    allow:\n` +
    `      - { id: bin, path: /usr/bin, recursive: true }\n      - { path: /opt/tool, sha256: ${HASH} }\n`,
);

Deno.test("compilePolicy() gives the allow entries rule ids after the other lists, and the default its own", () => {
  const plan = compilePolicy(parsePolicy(ALLOWLIST, "p.yaml"));
  assert.deepEqual(plan.execAllow, [
    { ruleId: 2, path: "/usr/bin", recursive: true },
    { ruleId: 3, path: "/opt/tool", sha256: HASH },
  ]);
  assert.equal(plan.rules[plan.execDefaultDeny!.ruleId]?.id, "exec.default");
  assert.deepEqual(plan.rules[3], { id: "exec.allow[1]", area: "exec", action: "allow", path: "/opt/tool" });
  assert.equal(
    compilePolicy(parsePolicy(exec("    denyMemfd: true\n"), "p.yaml")).execDefaultDeny,
    undefined,
  );
});

Deno.test("decide() refuses an exec outside the allowed set as untrusted, a changed hashed file as hash-mismatch", () => {
  const plan = compilePolicy(parsePolicy(ALLOWLIST, "p.yaml"));
  const defaultId = plan.execDefaultDeny!.ruleId;
  assert.deepEqual(decide(plan, { area: "exec", path: "/usr/bin/ls" }), { decision: "allow" });
  assert.deepEqual(decide(plan, { area: "exec", path: "/tmp/ls" }), {
    decision: "deny",
    ruleId: defaultId,
    ruleName: "exec.default",
    reason: "untrusted",
  });
  assert.equal(decide(plan, { area: "exec", path: "/usr/bin/nc" }).reason, "denied");
  assert.equal(decide(plan, { area: "exec", path: "/usr/bin/nc" }).ruleName, "nc");
  assert.equal(decide(plan, { area: "exec", path: "/opt/tool" }).decision, "allow");
  assert.deepEqual(decide(plan, { area: "exec", path: "/opt/tool", changed: true }), {
    decision: "deny",
    ruleId: 3,
    ruleName: "exec.allow[1]",
    reason: "hash-mismatch",
  });
  // Changed, but only a sha256 entry notices: a path entry allows its inode whatever it holds.
  assert.equal(decide(plan, { area: "exec", path: "/usr/bin/ls", changed: true }).decision, "allow");
  assert.equal(decide(plan, { area: "exec", path: "/usr/bin/ls", nameless: true }).reason, "untrusted");
  assert.equal(decide(plan, { area: "exec", path: "/tmp/ls" }, { mode: "audit" }).decision, "audit");
  // By inode: the rule ids the file's inode resolved to.
  assert.equal(decide(plan, { area: "exec", ruleIds: [2] }).decision, "allow");
  assert.equal(decide(plan, { area: "exec", ruleIds: [] }).reason, "untrusted");
  // The file area is not the allowlist's.
  assert.equal(decide(plan, { area: "file", path: "/tmp/ls" }).decision, "allow");
});

Deno.test("decide() applies the allowlist only in scope, and not at all with exec.default allow", () => {
  const scoped = compilePolicy(parsePolicy(
    minimal(
      "  mode: enforce\n  scope:\n    cgroups: [/t]\n  exec:\n    default: deny\n    allow: [{ path: /bin }]\n",
    ),
    "p.yaml",
  ));
  assert.equal(decide(scoped, { area: "exec", path: "/tmp/x", cgroup: "/t/a" }).reason, "untrusted");
  assert.equal(decide(scoped, { area: "exec", path: "/tmp/x", cgroup: "/other" }).decision, "allow");
  const open = compilePolicy(parsePolicy(exec("    allow: [{ path: /bin }]\n"), "p.yaml"));
  assert.equal(decide(open, { area: "exec", path: "/tmp/x" }).decision, "allow");
});

const FACTS: LintFacts = {
  resolvers: [],
  sshPorts: [22],
  survival: [
    { realPath: "/usr/lib/systemd/systemd", identity: "1:10", why: "PID 1's executable" },
    { realPath: "/usr/bin/dash", identity: "1:11", why: "the shell scripts and system() run" },
    { realPath: "/usr/lib/x86_64-linux-gnu/libc.so.6", identity: "1:12", why: "libc" },
    { realPath: "/var/lib/aegisbpf", identity: "1:13", why: "aegisbpf state", tree: true },
  ],
  paths: new Map([
    ["/usr/bin", { realPath: "/usr/bin", identity: "1:2" }],
    ["/usr/lib", { realPath: "/usr/lib", identity: "1:3" }],
    ["/usr/lib/systemd/systemd", { realPath: "/usr/lib/systemd/systemd", identity: "1:10" }],
  ]),
  now: new Date("2026-06-01T00:00:00Z"),
};

function lint(text: string): Warning[] {
  const source = parsePolicySource(text, "p.yaml");
  return lintPolicy(source.policy, source.locate, FACTS);
}

Deno.test("lockoutRisks() refuses exec.default deny without the survival set, naming what is missing", () => {
  const source = parsePolicySource(
    exec("    default: deny\n    allow: [{ path: /usr/bin, recursive: true }]\n"),
    "p.yaml",
  );
  const risks = lockoutRisks(source.policy, source.locate, FACTS);
  assert.deepEqual(risks.map((risk) => [risk.code, risk.severity, risk.position.line]), [
    ["survival-set", "error", 9],
    ["survival-set", "error", 9],
  ]);
  assert.match(
    risks[0]!.message,
    /^p\.yaml:9:14: exec\.default: deny refuses \/usr\/lib\/systemd\/systemd \(PID 1/,
  );
  assert.match(risks[1]!.message, /libc\.so\.6/);
});

Deno.test("lockoutRisks() accepts exec.default deny whose allowed set holds the survival set", () => {
  const source = parsePolicySource(
    exec(
      "    default: deny\n    allow:\n      - { path: /usr/bin, recursive: true }\n" +
        "      - { path: /usr/lib, recursive: true }\n",
    ),
    "p.yaml",
  );
  assert.deepEqual(lockoutRisks(source.policy, source.locate, FACTS), []);
  // By inode too: PID 1's executable named alone.
  const one = parsePolicySource(
    exec(
      "    default: deny\n    allow:\n      - { path: /usr/bin, recursive: true }\n" +
        "      - { path: /usr/lib/systemd/systemd }\n",
    ),
    "p.yaml",
  );
  const risks = lockoutRisks(one.policy, one.locate, FACTS);
  assert.deepEqual(risks.map((risk) => risk.message.includes("libc.so.6")), [true]);
});

Deno.test("lintPolicy() warns that upgrades need a re-apply, and that an allowlist without default deny does nothing", () => {
  const codes = (text: string) => lint(text).map((warning) => warning.code);
  assert.ok(
    codes(exec(
      "    default: deny\n    allow:\n      - { path: /usr/bin, recursive: true }\n" +
        "      - { path: /usr/lib, recursive: true }\n",
    )).includes("allow-upgrades"),
  );
  assert.deepEqual(codes(exec("    allow: [{ path: /usr/bin, recursive: true }]\n")), ["no-effect"]);
  assert.deepEqual(
    codes(exec(
      "    default: deny\n    allow:\n      - { path: /usr/bin, recursive: true }\n" +
        "      - { path: /usr/lib, recursive: true }\n      - { path: /nowhere }\n",
    )).sort(),
    ["allow-upgrades", "missing-path"],
  );
});

Deno.test("compilePolicy() and decide(): a trust entry allows the inodes it resolved to, by rule id only", () => {
  const plan = compilePolicy(
    parsePolicy(exec("    default: deny\n    allow:\n      - { id: pkgs, trust: dpkg }\n"), "p.yaml"),
  );
  assert.deepEqual(plan.execTrust, [{ ruleId: 1, source: "dpkg" }]);
  assert.equal(plan.execAllow, undefined);
  assert.deepEqual(plan.rules[1], { id: "pkgs", area: "exec", action: "allow" });
  assert.equal(decide(plan, { area: "exec", ruleIds: [1] }).decision, "allow");
  assert.equal(decide(plan, { area: "exec", ruleIds: [] }).reason, "untrusted");
  // By path alone a trust entry names no file; nameless files are never trusted.
  assert.equal(decide(plan, { area: "exec", path: "/usr/bin/ls" }).reason, "untrusted");
  assert.equal(decide(plan, { area: "exec", ruleIds: [1], nameless: true }).reason, "untrusted");
});

Deno.test("decide() checks a trust entry's file as a sha256 entry's: changed since apply, hash-mismatch", () => {
  const plan = compilePolicy(
    parsePolicy(
      exec(
        "    default: deny\n    allow:\n      - { id: bin, path: /usr/bin, recursive: true }\n" +
          "      - { id: pkgs, trust: dpkg }\n",
      ),
      "p.yaml",
    ),
  );
  // The file is under the path entry and trusted: the trust entry's check holds.
  assert.deepEqual(decide(plan, { area: "exec", ruleIds: [1, 2], changed: true }), {
    decision: "deny",
    ruleId: 2,
    ruleName: "pkgs",
    reason: "hash-mismatch",
  });
  assert.equal(decide(plan, { area: "exec", ruleIds: [1], changed: true }).decision, "allow");
});

Deno.test("lintPolicy() lists trust: dpkg's untrusted files and an unreadable database; neither is a lock-out risk", () => {
  const source = parsePolicySource(
    exec("    default: deny\n    allow:\n      - { id: pkgs, trust: dpkg }\n"),
    "p.yaml",
  );
  const base: LintFacts = { resolvers: [], sshPorts: [], survival: [], paths: new Map(), now: new Date() };
  const untrusted = [{ path: "/usr/bin/x", package: "x", reason: "md5-mismatch" as const }];
  const facts = { ...base, trust: { trusted: new Set<string>(), untrusted } };
  const warnings = lintPolicy(source.policy, source.locate, facts);
  const found = warnings.find((warning) => warning.code === "trust-untrusted");
  assert.match(
    found?.message ?? "",
    /1 files dpkg lists could run but stay untrusted.*\/usr\/bin\/x \(x: md5-mismatch\)/,
  );
  assert.deepEqual(lockoutRisks(source.policy, source.locate, facts), []);
  const unreadable = { ...base, trust: { trusted: new Set<string>(), untrusted: [], error: "no status" } };
  const error = lintPolicy(source.policy, source.locate, unreadable).find((w) =>
    w.code === "trust-unreadable"
  );
  assert.equal(error?.severity, "error");
});
