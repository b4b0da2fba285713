/**
 * What a benchmark suite reports (bench/results.json) and how RESULTS.md shows it. Every figure keeps its
 * samples; every ratio names the same-run baseline it divides by.
 */
import type { Summary } from "./stats.ts";

/** One measured quantity: its samples over rounds and their summary. */
export type Figure = {
  /** Stable key, unique in its section: `connect.tcp.aegis-10000`. */
  id: string;
  /** What was measured, for a reader. */
  label: string;
  /** Unit of the samples: "ns/op", "pps", "ms", "MiB", "events/s", "%", "x" (a ratio). */
  unit: string;
  samples: number[];
  summary: Summary;
  /** Per-round ratio to the figure named `to` (same section, same rounds). */
  ratio?: { to: string; summary: Summary };
};

/** A table of the section's own making (a comparison, a breakdown by phase). */
export type Table = { title: string; columns: string[]; rows: string[][] };

/** A target of the issue and where this run stands against it. */
export type Target = {
  name: string;
  /** The target as the issue states it: "<= 1.03x baseline". */
  want: string;
  /** What this run measured, in words and figures. */
  got: string;
  met: boolean;
};

/** The kernel's own accounting (kernel.bpf_stats_enabled) of one program over a measured phase. */
export type ProgramStat = { program: string; phase: string; runs: number; nsPerRun: number };

export type Section = {
  /** The suite's name (bench/suites/NAME.ts). */
  id: string;
  title: string;
  /** How it was measured: rounds, sizes, tools, what the baseline and the A/A control are. */
  method: string[];
  figures: Figure[];
  tables: Table[];
  programStats: ProgramStat[];
  targets: Target[];
  notes: string[];
  /** When the suite started, and the 1-minute load average at its start and end (other work on the machine). */
  startedAt: string;
  loadAverage: { start: number; end: number };
};

export type Environment = {
  date: string;
  kernel: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  deno: string;
  commit: string;
};

export type Results = {
  environment: Environment;
  quick: boolean;
  sections: Section[];
  /** Suites that could not produce their figures, and why. */
  failures: { suite: string; error: string }[];
};

/** A number as a reader wants it: 3 significant digits, thousands separated. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

const ratioText = (summary: Summary) =>
  `${summary.median.toFixed(3)}x (${summary.min.toFixed(3)}–${summary.max.toFixed(3)})`;

function escapeCell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

function markdownTable(columns: string[], rows: string[][]): string[] {
  return [
    `| ${columns.map(escapeCell).join(" | ")} |`,
    `| ${columns.map(() => "---").join(" | ")} |`,
    ...rows.map((row) => `| ${row.map(escapeCell).join(" | ")} |`),
  ];
}

/** RESULTS.md: the environment, each section's figures, tables, kernel accounting and targets. */
export function renderResults(results: Results, preface: readonly string[] = []): string {
  const env = results.environment;
  const lines: string[] = [
    "# aegisbpf benchmark results",
    "",
    "Written by `deno task bench` (bench/run.ts); do not edit by hand. The raw samples are in",
    "[results.json](results.json).",
    "",
    ...preface,
    ...(preface.length > 0 ? [""] : []),
    `- Date: ${env.date}`,
    `- Kernel: ${env.kernel}`,
    `- CPU: ${env.cpu} (${env.cores} cores), ${env.memoryGiB} GiB`,
    `- Deno ${env.deno}, aegisbpf commit ${env.commit}`,
    `- Run: ${results.quick ? "quick (fewer rounds and sizes: CI's smoke run, not for quoting)" : "full"}`,
    "",
    "Each figure is the median over interleaved rounds (the variants take turns, in an order that rotates",
    "each round), with the minimum and maximum in brackets. A ratio divides round by round by a baseline",
    "measured in the same run; the A/A row divides the baseline by a second run of itself and shows the noise",
    "floor.",
    "",
  ];
  const targets = results.sections.flatMap((section) => section.targets.map((t) => ({ section, t })));
  if (targets.length > 0) {
    lines.push("## Targets", "");
    lines.push(
      ...markdownTable(
        ["target", "wanted", "measured", "met"],
        targets.map(({ t }) => [t.name, t.want, t.got, t.met ? "yes" : "**no**"]),
      ),
      "",
    );
  }
  if (results.failures.length > 0) {
    lines.push("## Suites that failed", "");
    for (const failure of results.failures) lines.push(`- ${failure.suite}: ${failure.error}`);
    lines.push("");
  }
  for (const section of results.sections) {
    lines.push(`## ${section.title}`, "");
    lines.push(
      `Run ${section.startedAt}; machine load (1-minute average) ${section.loadAverage.start} at the start, ` +
        `${section.loadAverage.end} at the end (${env.cores} cores).`,
      "",
    );
    for (const line of section.method) lines.push(`- ${line}`);
    if (section.method.length > 0) lines.push("");
    if (section.figures.length > 0) {
      lines.push(
        ...markdownTable(
          ["figure", "median (min–max)", "unit", "ratio (min–max)", "to"],
          section.figures.map((figure) => [
            figure.label,
            `${formatNumber(figure.summary.median)} (${formatNumber(figure.summary.min)}–${
              formatNumber(figure.summary.max)
            })`,
            figure.unit,
            figure.ratio ? ratioText(figure.ratio.summary) : "",
            figure.ratio
              ? (section.figures.find((f) => f.id === figure.ratio!.to)?.label ?? figure.ratio.to)
              : "",
          ]),
        ),
        "",
      );
    }
    for (const table of section.tables) {
      lines.push(`### ${table.title}`, "", ...markdownTable(table.columns, table.rows), "");
    }
    if (section.programStats.length > 0) {
      lines.push("Kernel accounting (`bpf_stats`):", "");
      lines.push(
        ...markdownTable(
          ["program", "phase", "runs", "ns per run"],
          section.programStats.map((s) => [s.program, s.phase, String(s.runs), formatNumber(s.nsPerRun)]),
        ),
        "",
      );
    }
    for (const note of section.notes) lines.push(note, "");
  }
  return lines.join("\n").replace(/\n+$/, "\n");
}
