import assert from "node:assert/strict";
import { minimal } from "./_testdata.ts";
import {
  gatherLintFacts,
  parsePtraceScope,
  parseResolvConf,
  parseShells,
  parseSshConnection,
  parseSshdPorts,
  pathFact,
} from "./facts.ts";
import { parsePolicy } from "./parse.ts";

Deno.test("parseResolvConf() reads nameservers without comments or zones", () => {
  const text =
    "# generated\nsearch example.com\nnameserver 192.0.2.53\n  nameserver fe80::1%eth0\n#nameserver 1.1.1.1\n";
  assert.deepEqual(parseResolvConf(text), ["192.0.2.53", "fe80::1"]);
});

Deno.test("parseSshdPorts() reads Port lines and defaults to 22", () => {
  assert.deepEqual(parseSshdPorts("Port 2222\n#Port 22\nport 22\nPermitRootLogin no\n"), [2222, 22]);
  assert.deepEqual(parseSshdPorts(""), [22]);
});

Deno.test("parsePtraceScope() reads /proc/sys/kernel/yama/ptrace_scope; missing or odd text is no value", () => {
  assert.equal(parsePtraceScope("1\n"), 1);
  assert.equal(parsePtraceScope("3"), 3);
  assert.equal(parsePtraceScope(""), undefined);
  assert.equal(parsePtraceScope("7\n"), undefined);
});

Deno.test("parseShells() reads the paths of /etc/shells", () => {
  assert.deepEqual(parseShells("# /etc/shells\n/bin/sh\n/usr/bin/bash\n\n"), ["/bin/sh", "/usr/bin/bash"]);
});

Deno.test("parseSshConnection() reads the client address and port and the server port", () => {
  assert.deepEqual(parseSshConnection("203.0.113.7 51234 192.0.2.10 22"), {
    addr: "203.0.113.7",
    port: 22,
    clientPort: 51234,
  });
  assert.equal(parseSshConnection(undefined), undefined);
  assert.equal(parseSshConnection("garbage"), undefined);
});

Deno.test("pathFact() gives the real path and inode of a file, and nothing for a missing one", async () => {
  const self = new URL(import.meta.url).pathname;
  const info = await Deno.stat(self);
  assert.deepEqual(await pathFact(self), {
    realPath: await Deno.realPath(self),
    identity: `${info.dev}:${info.ino}`,
  });
  assert.equal(await pathFact("/nonexistent/file"), undefined);
});

Deno.test("gatherLintFacts() knows the policy's deny paths that exist and the aegisbpf binary", async () => {
  const self = new URL(import.meta.url).pathname;
  const policy = parsePolicy(
    minimal(`  files:\n    deny: [{ path: ${self} }, { path: /nonexistent }]\n`),
    "p.yaml",
  );
  const facts = await gatherLintFacts(policy, { binary: self, sshConnection: "10.0.0.1 5000 10.0.0.2 2222" });
  assert.deepEqual([...facts.paths.keys()], [self]);
  assert.ok(
    facts.survival.some((entry) =>
      entry.why === "the aegisbpf binary" && entry.realPath === facts.paths.get(self)?.realPath
    ),
  );
  assert.ok(
    facts.survival.some((entry) =>
      entry.why.startsWith("mapped executable") && entry.realPath.includes("ld-linux")
    ),
    "the dynamic loader: an exec rule on it would stop every dynamically linked program",
  );
  assert.deepEqual(facts.sshClient, { addr: "10.0.0.1", port: 2222, clientPort: 5000 });
  assert.ok(facts.sshPorts.length > 0);
  assert.ok(facts.resolvers.every((resolver) => typeof resolver === "string"));
});

Deno.test("gatherLintFacts() records the errno that kept PID 1's executable unread, not a guess", async () => {
  const policy = parsePolicy(minimal(), "p.yaml");
  const facts = await gatherLintFacts(policy, {});
  let code: string | undefined;
  try {
    await Deno.realPath("/proc/1/exe");
  } catch (error) {
    code = (error as { code?: string }).code ?? (error as Error).name;
  }
  const entry = facts.unchecked?.find((item) => item.path === "/proc/1/exe");
  if (code === undefined) {
    assert.equal(entry, undefined, "readable here: nothing unchecked");
    return;
  }
  assert.ok(entry, "unreadable here, so it must be listed as unchecked");
  assert.ok(entry.error?.startsWith(code), `${entry.error} names ${code}`);
  assert.ok(entry.remedy && entry.remedy.length > 0);
});
