import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import { compilePolicy } from "./compile.ts";
import { parseLearnedTable } from "./learned_table.ts";
import { parsePolicy } from "./parse.ts";
import { simulate } from "./simulate.ts";
import { minimal } from "./_testdata.ts";

Deno.test("parseLearnedTable() reads /etc/hosts lines and names a bad one by FILE:LINE", () => {
  assert.deepEqual(
    parseLearnedTable("# learned\n192.0.2.10 api.example.com\n\n2001:db8::1  v6.example.com # x\n", "t"),
    [
      { addr: "192.0.2.10", host: "api.example.com" },
      { addr: "2001:db8::1", host: "v6.example.com" },
    ],
  );
  assert.throws(
    () => parseLearnedTable("192.0.2.10\n", "t"),
    (e) => e instanceof InputError && /^t:1: expected/.test(e.message),
  );
  assert.throws(
    () => parseLearnedTable("x.example api\n", "t"),
    /t:1: x.example is not an IPv4 or IPv6 address/,
  );
  assert.throws(() => parseLearnedTable("192.0.2.1 a..b\n", "t"), /t:1: a\.\.b is not a host name/);
});

Deno.test("simulate() decides rules by name by the learned table and by what a line decided by name implies", () => {
  const plan = compilePolicy(parsePolicy(
    minimal(
      "  mode: enforce\n  network:\n    egress:\n      default: deny\n" +
        "      allow: [{ id: api, host: api.example.com, port: 443 }]\n",
    ),
    "p.yaml",
  ));
  const line = (daddr: string, extra = "") =>
    `{"type":"net.connect","rule":"network.egress.default"${extra},"net":{"protocol":"tcp","daddr":"${daddr}","dport":443}}\n`;
  const log = line("192.0.2.10") + line("192.0.2.11") + line("192.0.2.12", ',"hostName":"api.example.com"');
  const without = simulate(plan, log, "log");
  assert.equal(without.allowed, 1, "only the line decided by name");
  const learned = parseLearnedTable("192.0.2.10 api.example.com\n", "t");
  const report = simulate(plan, log, "log", undefined, learned);
  assert.equal(report.allowed, 2);
  assert.deepEqual(report.rules.map((rule) => [rule.rule, rule.actions]), [["network.egress.default", 1]]);
});
