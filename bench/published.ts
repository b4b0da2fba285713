/**
 * Published figures of the agents users would run instead, beside ours from the same results.json: the
 * "Published figures of other agents" section of RESULTS.md. The published figures are quoted, never
 * measured here; each names its source and what exactly it measured, and says where its method differs
 * from ours. An agent for which we found no published overhead figure to cite is left out (Tetragon,
 * Tracee and fapolicyd, when this was written).
 */
import { formatNumber, type Results } from "./lib/report.ts";

/** Where our comparable figures are: a section of results.json and the figure ids that fit. */
type OursQuery = { section: string; id: RegExp; what: string };

export type PublishedFigure = {
  agent: string;
  /** The figure as its source states it. */
  figure: string;
  /** What exactly was measured, and how. */
  measured: string;
  /** A URL, or a repository, path and commit. */
  source: string;
  /** Where its method differs from ours. */
  differs: string;
  ours: OursQuery[];
};

const OPEN: OursQuery = {
  section: "file_exec",
  id: /open/,
  what: "open()+close() with the BPF-LSM programs attached and 10,000 deny entries, ratio to detached",
};
const CONNECT: OursQuery = {
  section: "connect",
  id: /tcp.*aegis.*10000|aegis.*10000.*tcp/,
  what: "TCP connect() on loopback with 10,000 non-matching CIDR rules, ratio to no program",
};
const EVENTS: OursQuery = {
  section: "events",
  id: /./,
  what: "the real agent writing JSON events under a kernel flood",
};
const MEMORY: OursQuery = {
  section: "footprint",
  id: /rss|anon|memory/i,
  what: "the agent's resident memory",
};

const AEGIS_CPP = "https://github.com/ErenAri/Aegis-BPF/blob/8506763108b9f5fcca2799736c2dc6240c7c6f6a/" +
  "docs/PERF_BASELINE.md";

export const PUBLISHED: readonly PublishedFigure[] = [
  {
    agent: "AegisBPF (the C++ agent of the same name)",
    figure: "open()/close(): 1.53 µs per op without the agent, 1.46 µs with it (−4.58%); p95 ratio 1.030",
    measured: "an open/close microbenchmark with the agent in audit-only mode and an empty deny policy " +
      "(i9-13900H, Ubuntu 24.04, Linux 6.14), its self-hosted perf gate",
    source: `${AEGIS_CPP} ("Open/close microbench (audit-only, empty deny policy)", "KPI gates")`,
    differs: "no rules loaded and nothing enforced; a p95 ratio, not a median over interleaved rounds; " +
      "bare metal where ours is a ratio in an emulated VM (BPF-LSM does not load on our host)",
    ours: [OPEN],
  },
  {
    agent: "AegisBPF (the C++ agent of the same name)",
    figure: "connect() p95 ratio 1.006 (p50 2.33 µs with the agent)",
    measured: "loopback connect() latency percentiles with the agent in audit-only mode and an empty deny " +
      "policy, same run as above",
    source: `${AEGIS_CPP} ("Percentile profiles", "connect_p95_ratio")`,
    differs: "no rules loaded; a p95 ratio; ours holds 10,000 CIDR rules, enforcing, and is a median ratio",
    ours: [CONNECT],
  },
  {
    agent: "KubeArmor (BPF-LSM enforcer)",
    figure: '1% to 8% overhead "depending on what kind of policies and what kind of workloads" ' +
      "(3% to 12% with its AppArmor enforcer)",
    measured: "a maintainer's summary of KubeArmor's benchmarking: application throughput of a " +
      "microservices demo under load on Kubernetes, with and without KubeArmor",
    source: "https://github.com/kubearmor/KubeArmor/issues/1639 (maintainer's comment)",
    differs: "whole-application throughput of a Kubernetes workload, not one syscall; policies and rule " +
      "counts not stated",
    ours: [CONNECT, OPEN],
  },
  {
    agent: "Falco",
    figure: "38.1% CPU, 38 MB resident, 2% of events lost at 4,371.6 events/s",
    measured: "one round of Falco's event-generator benchmark as the blog quotes its statistics line; " +
      "each event is one generated action of several syscalls matching a rule",
    source: "https://falco.org/blog/falco-performance-testing/",
    differs: "events are rule matches of whole actions (each several syscalls), delivered as alerts; ours " +
      "are denial or audit events written as JSON lines; Falco's CPU is its whole process",
    ours: [EVENTS, MEMORY],
  },
];

/** Our figures that fit `query` in this run, as `label: median unit (ratio x)`; empty when none. */
export function oursFor(results: Results, query: OursQuery): string[] {
  const section = results.sections.find((s) => s.id === query.section);
  return (section?.figures ?? []).filter((figure) => query.id.test(figure.id)).map((figure) =>
    `${figure.label}: ${formatNumber(figure.summary.median)} ${figure.unit}` +
    (figure.ratio ? ` (${figure.ratio.summary.median.toFixed(3)}x)` : "")
  );
}

/** The RESULTS.md section: one row per published figure, ours beside it, then the sources. */
export function renderPublished(results: Results): string {
  const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ");
  const lines = [
    "## Published figures of other agents",
    "",
    "Quoted from their own publications (not measured here), beside ours from this run. The methods differ",
    "(the last column says how): read a row as a rough comparison, not a race.",
    "",
    "| agent | published figure | what they measured | ours in this run | where the methods differ |",
    "| --- | --- | --- | --- | --- |",
  ];
  for (const entry of PUBLISHED) {
    const ours = entry.ours.flatMap((query) => {
      const found = oursFor(results, query);
      return found.length > 0 ? found : [`${query.what}: not in this run (suite ${query.section})`];
    });
    lines.push(
      `| ${
        [entry.agent, entry.figure, entry.measured, ours.join("; "), entry.differs].map(cell).join(" | ")
      } |`,
    );
  }
  lines.push("", "Sources:", "");
  for (const entry of PUBLISHED) lines.push(`- ${entry.agent}, ${entry.figure}: ${entry.source}`);
  return lines.join("\n") + "\n";
}
