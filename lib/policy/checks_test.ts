import assert from "node:assert/strict";
import { parsePolicy, PolicyError } from "./parse.ts";
import { compilePolicy } from "./compile.ts";
import { describeProbe, parseHostPort, parseProbeTimeout } from "./checks.ts";
import { lintProbes, predictProbes } from "./checks_report.ts";
import { classifyProbe } from "../ops/probe_run.ts";
import { sshTarget } from "../ops/self_check.ts";
import { signPolicy, verifyBundle } from "./bundle.ts";
import { generateKeyPair } from "./keys.ts";
import { decodePublicKeyPem } from "./pem.ts";

const doc = (checks: string, body = "") =>
  `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata:\n  name: t\n  version: 1\nspec:\n  mode: enforce\n${body}` +
  `  checks:\n${checks}`;

function problems(text: string): string[] {
  try {
    parsePolicy(text, "p.yaml");
  } catch (error) {
    assert.ok(error instanceof PolicyError, String(error));
    return error.problems.map((problem) =>
      `${problem.position.line}:${problem.position.column}: ${problem.message.replace(/^[^:]*: /, "")}`
    );
  }
  return [];
}

Deno.test("spec.checks: probes are validated with FILE:LINE:COL at the bad key", () => {
  assert.deepEqual(problems(doc("    mustWork:\n      - connect: 10.0.0.1:443\n")), []);
  const found = problems(doc(
    "    mustWork:\n" +
      "      - connect: 10.0.0.1\n" + // 10
      "      - { exec: /bin/true, open: /etc/x }\n" + // 11
      "      - { open: relative }\n" + // 12
      "      - { resolve: 10.0.0.1 }\n" + // 13
      "      - { exec: /bin/true, protocol: udp }\n" + // 14
      '      - { connect: "[::1]:70000" }\n' + // 15
      "    mustDeny:\n" +
      "      - { exec: /bin/true, timeout: 31s }\n" + // 17
      "      - { exec: /bin/true, as: { gid: 3 } }\n" + // 18
      "      - { exec: /bin/true, bogus: 1 }\n" + // 19
      "    implicit: no\n", // 20
  ));
  const at = (line: number) => found.filter((problem) => problem.startsWith(`${line}:`));
  assert.match(at(10).join(), /is not HOST:PORT/);
  assert.match(at(11).join(), /a probe names one action, this one names exec and open/);
  assert.match(at(12).join(), /open must be an absolute path/);
  assert.match(at(13).join(), /resolve names a host name, not an address/);
  assert.match(at(14).join(), /protocol goes with connect/);
  assert.match(at(15).join(), /port 70000 is out of range/);
  assert.match(at(17).join(), /a probe's timeout is at most 30s/);
  assert.match(at(18).join(), /uid/);
  assert.match(at(19).join(), /bogus/);
  assert.equal(at(20).length, 1);
  assert.match(problems(doc("    mustWork: []\n    extra: 1\n")).join(), /extra/);
});

Deno.test("parseHostPort() and parseProbeTimeout() accept what the docs show and name what is wrong", () => {
  assert.deepEqual(parseHostPort("10.0.0.5:443"), { host: "10.0.0.5", port: 443 });
  assert.deepEqual(parseHostPort("[2001:db8::1]:443"), { host: "2001:db8::1", port: 443 });
  assert.deepEqual(parseHostPort("db.internal:5432"), { host: "db.internal", port: 5432 });
  assert.match(String(parseHostPort("2001:db8::1:443")), /not HOST:PORT/);
  assert.match(String(parseHostPort("[10.0.0.1]:80")), /not an IPv6 address/);
  assert.equal(parseProbeTimeout("5s"), 5000);
  assert.equal(parseProbeTimeout("1500ms"), 1500);
  assert.match(String(parseProbeTimeout("50ms")), /at least 100ms/);
  assert.match(String(parseProbeTimeout("1m")), /not a duration/);
});

Deno.test("classifyProbe() tells a policy's denial from a network failure and from a program's own exit code", () => {
  const connect = { connect: "10.0.0.1:80" };
  const exec = { exec: "/bin/x" };
  assert.equal(classifyProbe(connect, 0, "").got, "worked");
  assert.equal(
    classifyProbe(
      connect,
      97,
      "bash: connect: Operation not permitted\nbash: line 1: /dev/tcp/10.0.0.1/80: Operation not permitted",
    ).got,
    "denied",
  );
  const refused = classifyProbe(connect, 97, "bash: connect: Connection refused\n");
  assert.equal(refused.got, "failed");
  assert.match(refused.detail, /a network answer/);
  assert.equal(classifyProbe(connect, 97, "bash: connect: Network is unreachable").got, "failed");
  assert.equal(classifyProbe(exec, 126, "bash: line 1: /bin/x: Operation not permitted").got, "denied");
  assert.equal(classifyProbe(exec, 127, "bash: line 1: /bin/x: No such file or directory").got, "failed");
  // The program ran and said "Permission denied" itself: not the exec refused.
  const ran = classifyProbe(exec, 1, "x: /etc/shadow: Permission denied");
  assert.equal(ran.got, "failed");
  assert.match(ran.detail, /^ran, exit 1/);
  assert.equal(
    classifyProbe({ open: "/etc/x" }, 97, "bash: line 1: /etc/x: Permission denied").got,
    "denied",
  );
  assert.equal(classifyProbe({ resolve: "a.example" }, 97, "").got, "failed");
  assert.equal(classifyProbe(connect, 98, "").got, "failed");
});

Deno.test("describeProbe() names a probe as messages and history notes show it", () => {
  assert.equal(
    describeProbe("mustWork", { connect: "10.0.0.1:53", protocol: "udp", as: { uid: 33 } }),
    "mustWork connect 10.0.0.1:53/udp as 33:33",
  );
  assert.equal(
    describeProbe("mustDeny", { exec: "/usr/bin/curl", args: ["-s", "x"], in: "/a.slice" }),
    "mustDeny exec /usr/bin/curl -s x in /a.slice",
  );
});

Deno.test("sshTarget() reads sshd's port and what listens on loopback, or says why it is skipped", () => {
  const header = "  sl  local_address rem_address   st\n";
  const tcp = header + "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n";
  assert.deepEqual(sshTarget("", tcp, ""), { connect: "127.0.0.1:22" });
  const custom = header + "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n";
  assert.deepEqual(sshTarget("# comment\nPort 2024\n", custom, ""), { connect: "127.0.0.1:2024" });
  assert.deepEqual(sshTarget("", "", tcp), { connect: "[::1]:22" });
  // A connection to port 22 (state 01) is not a listener.
  const established = header +
    "   0: 0100007F:0016 0100007F:9C40 01 00000000:00000000 00:00000000 00000000\n";
  assert.match(String(sshTarget("", established, "")), /nothing listens on TCP port 22/);
});

Deno.test("predictProbes() decides each probe under the plan as the kernel would; lintProbes() places problems", () => {
  const text = doc(
    "    mustWork:\n      - connect: 10.0.0.1:443\n      - connect: db.internal:5432\n" +
      "    mustDeny:\n      - connect: 169.254.169.254:80\n      - exec: /usr/bin/nc\n      - connect: 10.0.0.2:80\n" +
      "      - resolve: example.com\n",
    "  exec:\n    deny: [{ id: nc, path: /usr/bin/nc }]\n" +
      "  network:\n    egress:\n      deny:\n        - { id: imds, cidr: 169.254.169.254/32 }\n" +
      "        - { id: db, cidr: 10.9.0.0/16 }\n",
  );
  const policy = parsePolicy(text, "p.yaml");
  const plan = compilePolicy(policy);
  const predicted = predictProbes(policy, plan, {
    addresses: new Map([["db.internal", ["10.9.0.7"]]]),
    resolvers: ["10.255.255.53"],
  });
  assert.deepEqual(
    predicted.map((p) => [p.probe, p.predicted, p.rule ?? null, p.passes]),
    [
      ["mustWork connect 10.0.0.1:443/tcp", "worked", null, true],
      ["mustWork connect db.internal:5432/tcp", "denied", "db", false],
      ["mustDeny connect 169.254.169.254:80/tcp", "denied", "imds", true],
      ["mustDeny exec /usr/bin/nc", "denied", "nc", true],
      ["mustDeny connect 10.0.0.2:80/tcp", "worked", null, false],
      ["mustDeny resolve example.com", "worked", null, false],
    ],
  );
  const audit = parsePolicy(text.replace("mode: enforce", "mode: audit"), "p.yaml");
  assert.equal(
    predictProbes(audit, compilePolicy(audit), { addresses: new Map(), resolvers: [] })[2]!.predicted,
    "audited",
  );

  const findings = lintProbes(policy, (path) => ({ file: "p.yaml", line: path.length, column: 1 }), {
    problems: new Map([["mustDeny[1]", [{ key: "exec", message: "/usr/bin/nc does not exist" }]]]),
  });
  assert.equal(findings.length, 1);
  assert.equal(findings[0]!.severity, "error");
  assert.equal(findings[0]!.message, "mustDeny exec /usr/bin/nc cannot run here: /usr/bin/nc does not exist");
  assert.equal(findings[0]!.position.line, 5, "at spec.checks.mustDeny[1].exec");
});

Deno.test("a signed bundle carries the checks: they come back from its payload, and a probe changed breaks the signature", () => {
  const text = doc("    mustDeny:\n      - connect: 169.254.169.254:80\n");
  const signer = generateKeyPair();
  const trustedKeys = [{
    keyid: signer.keyid,
    publicKey: decodePublicKeyPem(signer.publicKeyPem, "k.pub"),
    file: "k.pub",
  }];
  const options = { file: "b.json", trustedKeys, versionCounter: 0, now: new Date(), parsePolicy };
  const bundle = signPolicy(text, signer.privateKeyPem);
  assert.deepEqual(verifyBundle(bundle, options).policy.spec.checks, {
    mustDeny: [{ connect: "169.254.169.254:80" }],
  });
  const envelope = JSON.parse(bundle);
  const payload = new TextDecoder().decode(Uint8Array.from(atob(envelope.payload), (c) => c.charCodeAt(0)));
  const changed = payload.replace("mustDeny", "mustWork");
  envelope.payload = btoa(changed);
  assert.throws(() => verifyBundle(JSON.stringify(envelope), options), /Bad signature/);
});
