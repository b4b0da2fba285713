import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import "./parse.ts"; // loads the YAML parser
import { judgeCase, parsePolicyTest } from "./test_file.ts";

const GOOD = `policy: p.yaml
mode: enforce
cases:
  - name: metadata
    connect: 169.254.169.254:80
    expect: deny
    event: { rule: imds, tags: [T1552.005] }
  - connect: "[fd00:ec2::254]:443"
    protocol: udp
    expect: audit
  - exec: /usr/bin/nc
    args: [-h, 1]
    as: { uid: 1000 }
    expect: deny
  - open: /etc/shadow
    write: true
    expect: allow
  - bind: 8080
    expect: allow
`;

Deno.test("parsePolicyTest() reads every probe, resolving the policy against the file's directory", () => {
  const test = parsePolicyTest(GOOD, "/srv/tests/t.yaml");
  assert.equal(test.policy, "/srv/tests/p.yaml");
  assert.equal(test.mode, "enforce");
  assert.deepEqual(test.cases.map((c) => c.probe), [
    { kind: "connect", host: "169.254.169.254", port: 80, protocol: "tcp" },
    { kind: "connect", host: "fd00:ec2::254", port: 443, protocol: "udp" },
    { kind: "exec", path: "/usr/bin/nc", args: ["-h", "1"] },
    { kind: "open", path: "/etc/shadow", write: true },
    { kind: "bind", port: 8080, protocol: "tcp" },
  ]);
  assert.deepEqual(test.cases[0]?.event, { rule: "imds", tags: ["T1552.005"] });
  assert.deepEqual(test.cases[2]?.as, { uid: 1000, gid: 1000 });
  assert.equal(test.cases[1]?.name, "connect [fd00:ec2::254]:443/udp");
  assert.deepEqual(test.cases[3]?.position, { file: "/srv/tests/t.yaml", line: 15, column: 5 });
});

function problem(text: string): string {
  try {
    parsePolicyTest(text, "t.yaml");
  } catch (error) {
    assert.ok(error instanceof InputError);
    const { line, column } = error.position ?? {};
    return `${line}:${column}: ${error.message}`;
  }
  assert.fail("no error");
}

Deno.test("parsePolicyTest() names the place of each mistake", () => {
  const head = "policy: p.yaml\ncases:\n";
  assert.match(
    problem(`${head}  - connect: example.com:80\n    expect: deny\n`),
    /^3:14: connect: must be ADDRESS:PORT/,
  );
  assert.match(
    problem(`${head}  - connect: 10.0.0.1:80\n    expect: maybe\n`),
    /^4:13: expect must be allow, deny, audit/,
  );
  assert.match(problem(`${head}  - bind: 70000\n    expect: allow\n`), /^3:11: bind must be a whole number/);
  assert.match(
    problem(`${head}  - bind: 80\n    exec: /x\n    expect: allow\n`),
    /^3:5: case 1 needs exactly one probe/,
  );
  assert.match(
    problem(`${head}  - bind: 80\n    colour: red\n    expect: allow\n`),
    /^4:5: unknown key "colour"/,
  );
  assert.match(
    problem(`${head}  - bind: 80\n    write: true\n    expect: allow\n`),
    /^4:5: write: applies to open only/,
  );
  assert.match(
    problem(`${head}  - open: etc/shadow\n    expect: allow\n`),
    /^3:11: open: must be an absolute path/,
  );
  assert.match(
    problem(`${head}  - bind: 80\n    expect: allow\n    event: { rule: x }\n`),
    /^5:5: event: an allowed probe has no event/,
  );
  assert.match(problem("cases: []\n"), /^1:1: missing policy/);
  assert.match(problem("policy: p.yaml\ncases: []\n"), /^2:8: cases: must list at least one case/);
  assert.match(problem("policy: p.yaml\ncases: [\n"), /not valid YAML/);
  assert.match(
    problem("policy: p.yaml\nmode: strict\ncases: [{bind: 1, expect: allow}]\n"),
    /^2:7: mode must be/,
  );
});

Deno.test("judgeCase() passes a matching verdict and event, and lists every difference otherwise", () => {
  const [metadata] = parsePolicyTest(GOOD, "t.yaml").cases;
  const event = { decision: "deny", rule: "imds", tags: ["T1552.005"], net: { dport: 80 } };
  assert.equal(judgeCase(metadata!, { result: "EPERM", events: [event] }).status, "pass");
  const wrong = judgeCase(metadata!, { result: "EPERM", events: [{ ...event, rule: "other", tags: [] }] });
  assert.deepEqual(wrong.diff, [
    'event.rule: expected "imds", got "other"',
    'event.tags: expected ["T1552.005"], got []',
  ]);
  const allowed = judgeCase(metadata!, { result: "ok", events: [] });
  assert.equal(allowed.status, "fail");
  assert.equal(allowed.diff?.[0], "verdict: expected deny, got allow");
  const elsewhere = judgeCase(metadata!, { result: "EPERM", events: [] });
  assert.match(elsewhere.diff?.[0] ?? "", /got error .*refused by something else/);
  const audited = judgeCase(metadata!, { result: "ok", events: [{ ...event, decision: "audit" }] });
  assert.equal(audited.got?.verdict, "audit");
});
