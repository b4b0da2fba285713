import assert from "node:assert/strict";
import { oursFor, PUBLISHED, renderPublished } from "../../bench/published.ts";
import type { Results } from "../../bench/lib/report.ts";

const summary = (median: number) => ({ median, min: median, max: median, n: 1 });

const results = (figures: Results["sections"][number]["figures"]): Results => ({
  environment: { date: "", kernel: "", cpu: "", cores: 2, memoryGiB: 1, deno: "", commit: "" },
  quick: true,
  sections: [{
    id: "connect",
    title: "connect",
    method: [],
    figures,
    tables: [],
    programStats: [],
    targets: [],
    notes: [],
    startedAt: "",
    loadAverage: { start: 0, end: 0 },
  }],
  failures: [],
});

Deno.test("renderPublished() puts our figure of the run beside each published one, with its source", () => {
  const run = results([{
    id: "connect.tcp.aegis-10000",
    label: "TCP connect, aegisbpf 10,000 rules",
    unit: "ns/op",
    samples: [5100],
    summary: summary(5100),
    ratio: { to: "connect.tcp.none", summary: summary(1.021) },
  }]);
  const markdown = renderPublished(run);
  assert.match(markdown, /TCP connect, aegisbpf 10,000 rules: 5,100 ns\/op \(1\.021x\)/);
  for (const entry of PUBLISHED) assert.ok(markdown.includes(entry.source), entry.source);
  // A suite that did not run says so rather than leaving the cell empty.
  assert.match(markdown, /not in this run \(suite file_exec\)/);
});

Deno.test("oursFor() finds nothing in a run without the section", () => {
  assert.deepEqual(oursFor(results([]), { section: "events", id: /./, what: "events" }), []);
});
