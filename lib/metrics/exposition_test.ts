import assert from "node:assert/strict";
import { exposition } from "./exposition.ts";

Deno.test("exposition() writes HELP, TYPE and samples, escaping label values and help", () => {
  const text = exposition([
    {
      name: "aegisbpf_decisions_total",
      help: 'Decisions by hook\\and "decision"',
      type: "counter",
      samples: [
        { labels: { hook: "connect", decision: "deny" }, value: 3n },
        { labels: { hook: 'we"ird\\\n', decision: "audit" }, value: 0 },
      ],
    },
    { name: "aegisbpf_deadman_seconds_remaining", help: "Seconds", type: "gauge", samples: [] },
    { name: "aegisbpf_enforcing", help: "1 when enforcing", type: "gauge", samples: [{ value: 1 }] },
  ]);
  assert.equal(
    text,
    [
      '# HELP aegisbpf_decisions_total Decisions by hook\\\\and "decision"',
      "# TYPE aegisbpf_decisions_total counter",
      'aegisbpf_decisions_total{hook="connect",decision="deny"} 3',
      'aegisbpf_decisions_total{hook="we\\"ird\\\\\\n",decision="audit"} 0',
      "# HELP aegisbpf_deadman_seconds_remaining Seconds",
      "# TYPE aegisbpf_deadman_seconds_remaining gauge",
      "# HELP aegisbpf_enforcing 1 when enforcing",
      "# TYPE aegisbpf_enforcing gauge",
      "aegisbpf_enforcing 1",
      "",
    ].join("\n"),
  );
});

Deno.test("exposition() refuses bad names and a family twice", () => {
  assert.throws(
    () => exposition([{ name: "bad-name", help: "", type: "gauge", samples: [] }]),
    /Bad metric name/,
  );
  assert.throws(
    () =>
      exposition([{ name: "a", help: "", type: "gauge", samples: [{ labels: { "0x": "v" }, value: 1 }] }]),
    /Bad label/,
  );
  const family = { name: "a", help: "", type: "gauge" as const, samples: [] };
  assert.throws(() => exposition([family, family]), /twice/);
});
