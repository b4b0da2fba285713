import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import { minimal, SPEC_EXAMPLE } from "./_testdata.ts";
import {
  MAX_PROBLEMS,
  parsePolicy,
  parsePolicySource,
  PolicyError,
  policySha256,
  readPolicyFile,
} from "./parse.ts";

/** Asserts that `text` is refused with a first problem at LINE:COL whose message includes `includes`. */
function refuses(text: string, line: number, column: number, includes: string): PolicyError {
  try {
    parsePolicy(text, "p.yaml");
  } catch (error) {
    assert.ok(error instanceof PolicyError, `not a PolicyError: ${error}`);
    assert.ok(error instanceof InputError);
    assert.equal(error.message.split(": ")[0], `p.yaml:${line}:${column}`, error.message);
    assert.deepEqual(error.position, { file: "p.yaml", line, column });
    assert.ok(error.message.includes(includes), `${JSON.stringify(error.message)} lacks ${includes}`);
    return error;
  }
  assert.fail("the policy was accepted");
}

Deno.test("parsePolicy() reads the SPEC example", () => {
  const policy = parsePolicy(SPEC_EXAMPLE, "p.yaml");
  assert.equal(policy.metadata.version, 7);
  assert.equal(policy.metadata.notAfter, "2027-01-01T00:00:00Z");
  assert.equal(policy.spec.mode, "enforce");
  assert.deepEqual(policy.spec.network?.egress?.users?.[1], { gid: 27, denyPorts: [22, 23] });
  assert.deepEqual(policy.spec.network?.ingress?.failsafe, { ports: [22], protocol: "tcp" });
});

Deno.test("parsePolicy() defaults the mode to audit and the ingress default to pass", () => {
  const policy = parsePolicy(minimal("  network:\n    ingress:\n      interfaces: [eth0]\n"), "p.yaml");
  assert.equal(policy.spec.mode, "audit");
  assert.equal(policy.spec.network?.ingress?.default, "pass");
});

Deno.test("parsePolicy() reads the same policy written as JSON", () => {
  const json = JSON.stringify(parsePolicy(SPEC_EXAMPLE, "p.yaml"), null, "\t");
  assert.deepEqual(parsePolicy(json, "p.json"), parsePolicy(SPEC_EXAMPLE, "p.yaml"));
});

Deno.test("parsePolicy() reports the line and column of an unknown key and the valid keys", () => {
  const error = refuses(minimal("  mode: audit\n  fils:\n    deny: []\n"), 8, 3, "spec.fils: unknown key");
  assert.match(error.message, /valid keys here are mode, scope, files, exec, network, checks$/);
  refuses(minimal().replace("kind: Policy", "kind: Policy\nkinds: x"), 3, 1, "kinds: unknown key");
  refuses(
    minimal("  network:\n    egress:\n      deny:\n        - { cidr: 10.0.0.0/8, prot: tcp }\n"),
    10,
    31,
    "spec.network.egress.deny[0].prot: unknown key",
  );
});

Deno.test("parsePolicy() reports every problem, in file order", () => {
  try {
    parsePolicy(minimal("  mode: strict\n  fils: {}\n").replace("version: 1", "version: 0"), "p.yaml");
    assert.fail("accepted");
  } catch (error) {
    assert.ok(error instanceof PolicyError);
    assert.deepEqual(error.problems.map((p) => [p.position.line, p.position.column]), [[5, 12], [7, 9], [
      8,
      3,
    ]]);
  }
});

Deno.test("parsePolicy() reports a wrong apiVersion or kind at its value with the valid one", () => {
  refuses(
    minimal().replace("aegisbpf.io/v1", "aegisbpf.io/v2"),
    1,
    13,
    "the only valid value is aegisbpf.io/v1",
  );
  refuses(
    minimal().replace("kind: Policy", "kind: Polcy"),
    2,
    7,
    '"Polcy" is not valid; the only valid value',
  );
});

Deno.test("parsePolicy() reports a missing key at its mapping", () => {
  refuses(minimal().replace("  name: t\n", ""), 4, 3, "metadata.name: missing; expected a string");
  refuses(
    "apiVersion: aegisbpf.io/v1\nkind: Policy\nspec: {}\n",
    1,
    1,
    "metadata: missing; expected a mapping",
  );
  refuses(minimal("  files:\n    deny:\n      - { id: a }\n"), 9, 9, "spec.files.deny[0].path: missing");
});

Deno.test("parsePolicy() reports a bad metadata version, name or notAfter at its value", () => {
  refuses(
    minimal().replace("version: 1", "version: 0"),
    5,
    12,
    "0 is not valid; a version is an integer >= 1",
  );
  refuses(minimal().replace("version: 1", "version: 1.5"), 5, 12, "found 1.5; a version is an integer");
  refuses(minimal().replace("version: 1", 'version: "7"'), 5, 12, 'found "7"; a version is an integer');
  refuses(minimal().replace("name: t", "name: -bad name"), 4, 9, '"-bad name" is not valid; a name is');
  refuses(
    minimal().replace("version: 1", "version: 1\n  notAfter: 2027-01-01"),
    6,
    13,
    "notAfter is an RFC 3339 time with a zone",
  );
});

Deno.test("parsePolicy() reports an invalid mode or ingress default with the valid values", () => {
  refuses(minimal("  mode: strict\n"), 7, 9, '"strict" is not valid; valid values are audit, enforce');
  refuses(
    minimal("  network:\n    ingress: { interfaces: [eth0], default: block }\n"),
    8,
    45,
    "valid values are pass, drop",
  );
});

Deno.test("parsePolicy() reports an empty section at its key", () => {
  refuses(minimal("  files:\n"), 7, 3, "spec.files: found an empty value; expected a mapping");
});

Deno.test("parsePolicy() reports a malformed CIDR, and one with host bits, at the value", () => {
  const rule = (cidr: string) => minimal(`  network:\n    egress:\n      deny:\n        - cidr: ${cidr}\n`);
  refuses(rule("10.0.0.0/33"), 10, 17, "prefix length must be 0..32; valid is an IPv4 or IPv6 address");
  refuses(rule("10.0.0.256"), 10, 17, "Invalid IPv4 address");
  refuses(rule('"1::2::3"'), 10, 17, "Invalid IPv6 address");
  refuses(
    rule("10.1.2.3/8"),
    10,
    17,
    "10.1.2.3/8 has host bits set; write the network 10.0.0.0/8 or the host",
  );
  refuses(rule('"2001:db8::1/32"'), 10, 17, "write the network 2001:db8::/32");
  assert.ok(parsePolicy(rule('"::ffff:10.0.0.0/104"'), "p.yaml"));
});

Deno.test("parsePolicy() reports ports out of range, repeated or empty at the port", () => {
  const rule = (ports: string) => minimal(`  network:\n    bind:\n      deny:\n        - { ${ports} }\n`);
  refuses(rule("port: 0"), 10, 19, "0 is not valid; valid ports are 1-65535");
  refuses(rule("port: 65536"), 10, 19, "65536 is not valid; valid ports are 1-65535");
  refuses(rule("port: http"), 10, 19, 'found "http"; a port is an integer 1-65535');
  refuses(rule("ports: [22, 80, 22]"), 10, 29, "port 22 is listed twice");
  refuses(rule("ports: []"), 10, 20, "an empty list is not valid; list at least one port");
  refuses(rule("protocol: tcp"), 10, 11, "name the ports with either port or ports");
});

Deno.test("parsePolicy() refuses a network rule with neither a cidr nor a port, or with port and ports", () => {
  const rule = (body: string) => minimal(`  network:\n    egress:\n      allow:\n        - ${body}\n`);
  const error = refuses(
    rule("{ id: x, protocol: tcp }"),
    10,
    11,
    "a rule matches nothing without a cidr or a port",
  );
  assert.equal(error.ruleId, "x");
  refuses(rule("{ port: 1, ports: [2] }"), 10, 29, "use either port or ports, not both");
});

Deno.test("parsePolicy() refuses duplicate, malformed and reserved rule ids, naming the first use", () => {
  const two = minimal("  files:\n    deny:\n      - { id: a, path: /x }\n      - { id: a, path: /y }\n");
  const error = refuses(two, 10, 15, 'rule id "a" is already used at spec.files.deny[0]');
  assert.equal(error.ruleId, "a");
  refuses(
    minimal("  files:\n    deny:\n      - { id: 'a b', path: /x }\n"),
    9,
    15,
    "rule ids are 1-64 letters",
  );
  refuses(
    minimal("  files:\n    deny:\n      - { id: default, path: /x }\n"),
    9,
    15,
    '"default" is reserved',
  );
  const generated = minimal(
    "  files:\n    deny:\n      - { path: /x }\n  exec:\n    deny:\n      - { id: 'files.deny[0]', path: /y }\n",
  );
  refuses(generated, 12, 15, "rule ids are 1-64 letters");
});

Deno.test("parsePolicy() names the generated id of a rule without one", () => {
  const error = refuses(
    minimal("  files:\n    deny:\n      - { path: /x }\n      - { path: x }\n"),
    10,
    17,
    "path",
  );
  assert.equal(error.ruleId, "files.deny[1]");
});

Deno.test("parsePolicy() refuses relative paths and paths with . or .. components", () => {
  const deny = (path: string) => minimal(`  exec:\n    deny:\n      - path: ${path}\n`);
  refuses(deny("usr/bin/nc"), 9, 15, "path must be an absolute path");
  refuses(deny("/usr/../bin/nc"), 9, 15, "path must be an absolute path");
  refuses(minimal("  scope:\n    exempt: [sshd.service]\n"), 8, 14, "a cgroup must be an absolute path");
});

Deno.test("parsePolicy() refuses users entries with both or neither of uid/gid and allow/deny ports", () => {
  const users = (entry: string) => minimal(`  network:\n    egress:\n      users:\n        - ${entry}\n`);
  refuses(users("{ uid: 1, gid: 2, allowPorts: [80] }"), 10, 11, "names exactly one of uid or gid");
  refuses(users("{ uid: 1 }"), 10, 11, "exactly one of allowPorts or denyPorts");
  refuses(users("{ uid: 1, allowPorts: [80], denyPorts: [22] }"), 10, 11, "exactly one of allowPorts");
  refuses(users("{ uid: -1, allowPorts: [] }"), 10, 18, "valid ids are 0-4294967294");
  refuses(users("{ gid: 1, denyPorts: [] }"), 10, 32, "list at least one port");
  assert.ok(parsePolicy(users("{ uid: 1, allowPorts: [] }"), "p.yaml"));
});

Deno.test("parsePolicy() refuses two users entries for the same uid", () => {
  const text = minimal(
    "  network:\n    egress:\n      users:\n        - { uid: 1, allowPorts: [80] }\n        - { uid: 1, denyPorts: [22] }\n",
  );
  refuses(text, 11, 11, "uid 1 has a users entry already");
});

Deno.test("parsePolicy() refuses an ingress section without interfaces or with a bad name", () => {
  refuses(minimal("  network:\n    ingress: { interfaces: [] }\n"), 8, 28, "list at least one interface");
  refuses(minimal("  network:\n    ingress: { interfaces: [a/b] }\n"), 8, 29, "an interface name is 1-15");
});

Deno.test("parsePolicy() refuses duplicate keys at the second one", () => {
  refuses(minimal("  mode: audit\n  mode: enforce\n"), 8, 3, "duplicate key mode; each key may appear once");
  refuses('{"apiVersion": "aegisbpf.io/v1", "apiVersion": "x"}', 1, 34, 'duplicate key "apiVersion"');
});

Deno.test("parsePolicy() refuses YAML anchors, aliases, merge keys and tags", () => {
  refuses(minimal("  files:\n    deny: &d []\n  exec:\n    deny: *d\n"), 8, 14, "a YAML anchor (&name)");
  refuses(
    minimal("  files:\n    deny: &d []\n  exec:\n    deny: *d\n").replace("&d ", ""),
    10,
    11,
    "a YAML alias",
  );
  refuses(minimal("  <<: { mode: audit }\n"), 7, 3, "a YAML merge key (<<); write the keys out");
  refuses(minimal("  mode: !!str audit\n"), 7, 15, "a YAML tag (tag:yaml.org,2002:str)");
});

Deno.test("parsePolicy() refuses non-string keys", () => {
  refuses(minimal("  1: audit\n"), 7, 3, "a key that is not a string");
});

Deno.test("parsePolicy() refuses tabs used as indentation", () => {
  refuses(minimal("  files:\n\tdeny: []\n"), 8, 1, "a tab used as indentation; indent with spaces");
});

Deno.test("parsePolicy() refuses a second document", () => {
  refuses(`${minimal()}---\n${minimal()}`, 8, 1, "a second YAML document");
});

Deno.test("parsePolicy() refuses a root that is not a mapping", () => {
  refuses("- a\n- b\n", 1, 1, "the document: found a list; expected a mapping");
  refuses("hello\n", 1, 1, 'the document: found "hello"; expected a mapping');
});

Deno.test("parsePolicy() refuses an empty file and one with only comments", () => {
  refuses("", 1, 1, "the file is empty; a policy starts with apiVersion: aegisbpf.io/v1");
  refuses("\n# nothing\n", 1, 1, "the file is empty");
});

Deno.test("parsePolicy() refuses NUL bytes and binary garbage at the first one", () => {
  refuses(
    minimal().replace("name: t", "name: t\0"),
    4,
    10,
    "binary data (U+00); a policy is YAML or JSON text",
  );
  const garbage = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => (i * 37) % 256));
  refuses(garbage, 1, 1, "binary data");
});

Deno.test("parsePolicy() refuses very deep nesting without a stack overflow", () => {
  assert.throws(
    () => parsePolicy(`${"[".repeat(50000)}${"]".repeat(50000)}`, "p.yaml"),
    /nesting is too deep/,
  );
  // Two block levels (spec, a) and 30 brackets are 32; the 31st bracket is one too many.
  refuses(minimal(`  a: ${"[".repeat(40)}${"]".repeat(40)}\n`), 7, 36, "nesting is too deep");
  const block = Array.from({ length: 200 }, (_, i) => `${" ".repeat(i)}a:`).join("\n");
  assert.throws(() => parsePolicy(block, "p.yaml"), PolicyError);
});

Deno.test("parsePolicy() refuses text over the size limit before parsing it", () => {
  assert.throws(
    () => parsePolicy(`#${" ".repeat(17 * 1024 * 1024)}`, "p.yaml"),
    (error: unknown) =>
      error instanceof PolicyError &&
      error.message === "p.yaml: the policy is 17.0 MiB; a policy may be at most 16.0 MiB",
  );
});

Deno.test("parsePolicy() reports JSON syntax errors with their position", () => {
  refuses(
    '{"apiVersion": "aegisbpf.io/v1",\n "kind": "Policy",}',
    2,
    19,
    "invalid JSON: expected double-quoted",
  );
  assert.throws(
    () => parsePolicy('{"apiVersion": tru}', "p.json"),
    /p\.json:1:16: invalid JSON: unexpected token '}'; fix the JSON syntax$/,
  );
});

Deno.test("parsePolicySource() locates a key path, or the nearest written ancestor", () => {
  const source = parsePolicySource(SPEC_EXAMPLE, "p.yaml");
  assert.deepEqual(source.locate(["spec", "network", "egress", "deny", 1, "cidr"]), {
    file: "p.yaml",
    line: 25,
    column: 19,
  });
  assert.deepEqual(source.locate(["spec", "files", "deny", 1, "id"]), {
    file: "p.yaml",
    line: 15,
    column: 9,
  });
});

Deno.test("policySha256() hashes the exact bytes", () => {
  const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  assert.equal(policySha256("abc"), abc);
  assert.equal(policySha256(new TextEncoder().encode("abc")), abc);
});

Deno.test("readPolicyFile() returns the text and bytes of a file", async () => {
  const path = new URL("./_testdata.ts", import.meta.url).pathname;
  const file = await readPolicyFile(path);
  assert.equal(file.text, await Deno.readTextFile(path));
  assert.equal(file.bytes.length, (await Deno.stat(path)).size);
});

Deno.test("readPolicyFile() refuses a missing file, a directory, a device, a huge file and binary", async () => {
  const refused = async (path: string, message: RegExp, maxBytes?: number) => {
    await assert.rejects(readPolicyFile(path, maxBytes), (error: unknown) => {
      assert.ok(error instanceof InputError && !(error instanceof PolicyError), String(error));
      assert.match(error.message, message);
      assert.deepEqual(error.position, { file: path });
      return true;
    });
  };
  await refused("/nonexistent/policy.yaml", /^\/nonexistent\/policy\.yaml: no such file$/);
  await refused("/tmp", /^\/tmp: is a directory; give a policy file$/);
  await refused("/dev/null", /^\/dev\/null: is not a regular file/);
  const self = new URL(import.meta.url).pathname;
  await refused(self, /: the policy is 0\.0 MiB; a policy may be at most 0\.0 MiB$/, 10);
  await refused(Deno.execPath(), /: is not UTF-8 text|the policy is .* MiB/);
});

Deno.test("parsePolicy() refuses an interface or cgroup listed twice at the second one", () => {
  refuses(minimal("  network:\n    ingress: { interfaces: [eth0, eth0] }\n"), 8, 35, "eth0 is listed twice");
  refuses(minimal("  scope:\n    exempt: [/a, /a]\n"), 8, 18, "/a is listed twice");
});

Deno.test("parsePolicy() reports JSON problems and repeated keys with their line and column", () => {
  const json = (spec: string) =>
    `{\n\t"apiVersion": "aegisbpf.io/v1",\n\t"kind": "Policy",\n\t"metadata": {"name": "t", "version": 1},\n\t"spec": ${spec}\n}`;
  refuses(json('{"mode": "on"}'), 5, 19, '"on" is not valid; valid values are audit, enforce');
  refuses(json('{"files": {"deny": [], "deny": []}}'), 5, 33, 'duplicate key "deny"');
  refuses(json('{"exec": {"deny": [{"path": "/x", "path": "/y"}]}}'), 5, 44, 'duplicate key "path"');
  const quoted = json('{"exec": {"deny": [{"id": "a", "path": "/odd \\": \\"name"}]}}');
  assert.equal(parsePolicy(quoted, "p.json").spec.exec?.deny?.[0]?.path, '/odd ": "name');
});

Deno.test("parsePolicy() reports a NAT64 prefix that is not an IPv6 /96 at its value", () => {
  const policy = (prefixes: string) =>
    minimal(`  network:\n    egress:\n      nat64Prefixes: [${prefixes}]\n`);
  assert.deepEqual(
    parsePolicy(policy('"2001:db8:64::/96"'), "p.yaml").spec.network?.egress?.nat64Prefixes,
    ["2001:db8:64::/96"],
  );
  const line = 9; // minimal() starts the spec text on line 7
  refuses(policy('"2001:db8:64::/64"'), line, 23, "is not an IPv6 /96");
  refuses(policy("10.0.0.0/8"), line, 23, "is not an IPv6 /96");
  refuses(policy('"2001:db8:64::1/96"'), line, 23, "host bits set");
  refuses(policy('"64:ff9b::/96", "64:ff9b::/96"'), line, 39, "listed twice");
});

Deno.test("parsePolicy() reports at most MAX_PROBLEMS problems, the first in file order", () => {
  const keys = Array.from({ length: 150 }, (_, i) => `  k${i}: 1\n`).join("");
  try {
    parsePolicy(minimal(keys), "p.yaml");
    assert.fail("accepted");
  } catch (error) {
    assert.ok(error instanceof PolicyError);
    assert.equal(error.problems.length, MAX_PROBLEMS);
    assert.match(error.problems[0]!.message, /^p\.yaml:7:3: spec\.k0: unknown key/);
  }
});

Deno.test("parsePolicy() takes maxFiles on recursive rules only, as a positive integer", () => {
  const rule = (keys: string) => minimal(`  files:\n    deny:\n      - { path: /srv/keys, ${keys} }\n`);
  assert.equal(
    parsePolicy(rule("recursive: true, maxFiles: 50"), "p.yaml").spec.files?.deny?.[0]?.maxFiles,
    50,
  );
  refuses(rule("maxFiles: 50"), 9, 38, "maxFiles bounds a recursive rule's walk; set recursive: true");
  refuses(rule("recursive: true, maxFiles: 0"), 9, 55, "maxFiles is at least 1");
  refuses(rule("recursive: true, maxFiles: 2.5"), 9, 55, "maxFiles is an integer");
});

Deno.test("parsePolicy() takes exe, children and optional on egress, users and bind entries, and the egress default", () => {
  const policy = parsePolicy(
    minimal(
      "  network:\n    egress:\n      default: deny\n" +
        "      allow: [{ cidr: 10.0.0.0/8, exe: /usr/bin/curl, children: true }]\n" +
        "      deny: [{ cidr: 10.1.0.0/16, exe: /opt/x, optional: true }]\n" +
        "      users: [{ uid: 0, denyPorts: [25], exe: /usr/bin/curl }, { uid: 0, denyPorts: [25] }]\n" +
        "    bind:\n      deny: [{ port: 8080, exe: /usr/bin/python3 }]\n",
    ),
    "p.yaml",
  );
  const egress = policy.spec.network?.egress;
  assert.equal(egress?.default, "deny");
  assert.deepEqual(egress?.allow, [{ cidr: "10.0.0.0/8", exe: "/usr/bin/curl", children: true }]);
  assert.deepEqual(egress?.deny, [{ cidr: "10.1.0.0/16", exe: "/opt/x", optional: true }]);
  assert.equal(policy.spec.network?.bind?.deny?.[0]?.exe, "/usr/bin/python3");
});

Deno.test("parsePolicy() reports a bad exe, children or egress default at FILE:LINE:COL", () => {
  const rule = (entry: string) => minimal(`  network:\n    egress:\n      deny:\n        - ${entry}\n`);
  refuses(rule("{ cidr: 10.0.0.0/8, exe: usr/bin/curl }"), 10, 36, "exe must be an absolute path");
  refuses(rule("{ cidr: 10.0.0.0/8, exe: 7 }"), 10, 36, "found 7; expected a string");
  refuses(
    rule("{ cidr: 10.0.0.0/8, exe: /usr/bin/curl, children: yes }"),
    10,
    61,
    "children is true or false",
  );
  refuses(
    rule("{ cidr: 10.0.0.0/8, children: true }"),
    10,
    41,
    "children applies to an entry that names a program",
  );
  refuses(
    minimal("  network:\n    egress:\n      default: block\n"),
    9,
    16,
    'the egress default is "allow"',
  );
  refuses(
    minimal("  network:\n    bind:\n      deny: [{ port: 80, optional: true }]\n"),
    9,
    36,
    "optional applies to an entry that names a program",
  );
  refuses(
    minimal(
      "  network:\n    egress:\n      users:\n        - { uid: 1, denyPorts: [25], exe: /a }\n" +
        "        - { uid: 1, denyPorts: [26], exe: /a }\n",
    ),
    11,
    11,
    "uid 1 with exe /a has a users entry already",
  );
});

Deno.test("parsePolicy() refuses a files.protect entry without a path, with a wrong type or an unknown key", () => {
  const protect = (entry: string) => minimal(`  files:\n    protect:\n      - ${entry}\n`);
  const error = refuses(protect("{ id: cron, recursive: true }"), 9, 9, "path");
  assert.equal(error.ruleId, "cron");
  refuses(protect("{ path: etc/cron.d }"), 9, 17, "path must be an absolute path");
  refuses(protect("{ path: /etc/cron.d, recursive: yes }"), 9, 41, "expected true or false");
  refuses(protect("{ path: /etc/cron.d, optional: 1 }"), 9, 40, "expected true or false");
  refuses(protect("{ path: /etc/cron.d, maxFiles: 10 }"), 9, 30, "maxFiles: unknown key");
  refuses(protect("{ path: /etc/cron.d, writers: [/usr/bin/dpkg] }"), 9, 30, "writers: unknown key");
  refuses(minimal("  files:\n    protect: /etc/cron.d\n"), 8, 14, "expected a list");
  const named = refuses(protect("{ path: /x }\n      - { path: x }"), 10, 17, "path");
  assert.equal(named.ruleId, "files.protect[1]");
});

Deno.test("parsePolicy() reads files.writers entries and names them files.writers[N]", () => {
  const policy = parsePolicy(
    minimal(
      "  files:\n    writers:\n      - { exe: /usr/bin/dpkg, children: true }\n      - { id: vi, exe: /usr/sbin/visudo }\n",
    ),
    "p.yaml",
  );
  assert.deepEqual(policy.spec.files?.writers, [{ exe: "/usr/bin/dpkg", children: true }, {
    id: "vi",
    exe: "/usr/sbin/visudo",
  }]);
});

Deno.test("parsePolicy() refuses a files.writers entry without an exe, with a wrong type or an unknown key", () => {
  const writers = (entry: string) => minimal(`  files:\n    writers:\n      - ${entry}\n`);
  const error = refuses(writers("{ id: dpkg, children: true }"), 9, 9, "exe");
  assert.equal(error.ruleId, "dpkg");
  refuses(writers("{ exe: usr/bin/dpkg }"), 9, 16, "exe must be an absolute path");
  refuses(writers("{ exe: /usr/bin/dpkg, children: yes }"), 9, 41, "children is true or false");
  refuses(writers("{ exe: /usr/bin/dpkg, optional: 1 }"), 9, 41, "optional is true or false");
  refuses(writers("{ exe: /usr/bin/dpkg, path: /etc }"), 9, 31, "path: unknown key");
  refuses(minimal("  files:\n    writers: /usr/bin/dpkg\n"), 8, 14, "expected a list");
  const named = refuses(writers("{ exe: /a }\n      - { exe: 3 }"), 10, 16, "exe");
  assert.equal(named.ruleId, "files.writers[1]");
});

Deno.test("parsePolicy() reports a malformed host pattern at FILE:LINE:COL", () => {
  const rule = (entry: string) => minimal(`  network:\n    egress:\n      allow:\n        - ${entry}\n`);
  refuses(rule('{ host: "*.*" }'), 10, 19, "wildcard past the first label");
  refuses(rule("{ host: a..example.com }"), 10, 19, "empty label");
  refuses(rule(`{ host: ${"a".repeat(64)}.example.com }`), 10, 19, "a label has at most 63");
  refuses(rule(`{ host: ${"abcdefghi.".repeat(25)}example.com }`), 10, 19, "at most 253");
  refuses(rule('{ host: "api.*.example.com" }'), 10, 19, "wildcard past the first label");
  refuses(rule("{ host: api_v2.example.com }"), 10, 19, 'outside letters, digits and "-"');
  refuses(rule("{ host: 7 }"), 10, 19, "a host is a string");
  refuses(rule("{ host: api.example.com, cidr: 10.0.0.0/8 }"), 10, 19, "use either host or cidr");
  refuses(rule("{ host: api.example.com, port: 1, ports: [2] }"), 10, 52, "use either port or ports");
  refuses(
    minimal(
      "  network:\n    ingress:\n      interfaces: [eth0]\n      allow: [{ port: 1, host: a.example }]\n",
    ),
    10,
    26,
    "host: unknown key",
  );
});

Deno.test("parsePolicy() takes an exact host and a wildcard, and refuses a host with exe as not supported yet", () => {
  const rule = (entry: string) => minimal(`  network:\n    egress:\n      allow:\n        - ${entry}\n`);
  const policy = parsePolicy(rule("{ id: api, host: API.Example.com., port: 443 }"), "p.yaml");
  assert.deepEqual(policy.spec.network?.egress?.allow, [{ id: "api", host: "API.Example.com.", port: 443 }]);
  const wildcard = parsePolicy(rule('{ host: "*.test.example" }'), "p.yaml");
  assert.deepEqual(wildcard.spec.network?.egress?.allow, [{ host: "*.test.example" }]);
  refuses(rule('{ host: "*.*" }'), 10, 19, "wildcard past the first label");
  refuses(rule('{ host: "*.a..example" }'), 10, 19, "empty label");
  refuses(rule('{ host: "a.*.example" }'), 10, 19, "wildcard past the first label");
  refuses(rule(`{ host: "*.${"a".repeat(64)}.example" }`), 10, 19, "label of 64 bytes");
  refuses(rule(`{ host: "*.${"abcdefg.".repeat(32)}example" }`), 10, 19, "at most 253");
  refuses(rule('{ host: "*.a.b.c.d.e.f.g.h.i" }'), 10, 19, "at most 8 labels");
  const both = parsePolicy(rule("{ host: api.example.com, exe: /usr/bin/curl, children: true }"), "p.yaml");
  assert.deepEqual(both.spec.network?.egress?.allow, [
    { host: "api.example.com", exe: "/usr/bin/curl", children: true },
  ]);
  refuses(rule("{ host: api.example.com, exe: usr/bin/curl }"), 10, 41, "absolute");
  const mixed = parsePolicy(
    minimal(
      "  network:\n    egress:\n      allow:\n        - { host: api.example.com }\n" +
        "      deny:\n        - { cidr: 10.0.0.0/8, exe: /usr/bin/curl }\n",
    ),
    "p.yaml",
  );
  assert.equal(
    mixed.spec.network?.egress?.deny?.[0]?.exe,
    "/usr/bin/curl",
    "rules by name beside rules by program",
  );
});

Deno.test("parsePolicy() reads rule tags and refuses bad ones at the tag, naming the rule", () => {
  const tagged = (tags: string) =>
    minimal(`  files:\n    protect:\n      - path: /etc/shadow\n        tags: ${tags}\n`);
  const policy = parsePolicy(tagged("[T1003.008, pci-dss]"), "p.yaml");
  assert.deepEqual(policy.spec.files?.protect?.[0]?.tags, ["T1003.008", "pci-dss"]);
  refuses(tagged("[T1003.008, 'has space']"), 10, 27, "a tag is 1-32 letters");
  refuses(tagged("[T1003.008, T1003.008]"), 10, 27, "tag T1003.008 is listed twice");
  refuses(tagged(`[${"x".repeat(33)}]`), 10, 16, "a tag is 1-32 letters");
  refuses(tagged("[a, b, c, d, e, f, g, h, i]"), 10, 15, "at most 8 tags");
  refuses(tagged("T1003.008"), 10, 15, "tags is a list");
  const error = refuses(tagged("['']"), 10, 16, "a tag is");
  assert.equal(error.ruleId, "files.protect[0]");
  for (const list of ["exec:\n    deny", "exec:\n    allow", "files:\n    writers"]) {
    const key = list.endsWith("writers") ? "exe" : "path";
    const text = minimal(`  ${list}:\n      - ${key}: /usr/bin/curl\n        tags: [T1105]\n`);
    assert.ok(parsePolicy(text, "p.yaml"));
  }
  const net = minimal(
    "  network:\n    egress:\n      deny:\n        - cidr: 169.254.169.254/32\n          tags: [T1552.005]\n" +
      "    bind:\n      deny:\n        - port: 4444\n          tags: [T1571]\n",
  );
  assert.deepEqual(parsePolicy(net, "p.yaml").spec.network?.egress?.deny?.[0]?.tags, ["T1552.005"]);
});
