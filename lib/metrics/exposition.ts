/**
 * The Prometheus text exposition format (version 0.0.4), as node_exporter's textfile collector and
 * `promtool check metrics` read it: per family one HELP and one TYPE line, then its samples. Pure.
 */

export type MetricType = "gauge" | "counter";

export type Sample = { labels?: Readonly<Record<string, string>>; value: number | bigint };

export type Family = { name: string; help: string; type: MetricType; samples: readonly Sample[] };

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** The families as exposition text, each with HELP and TYPE (also when it has no sample). */
export function exposition(families: readonly Family[]): string {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const family of families) {
    if (!NAME.test(family.name)) throw new Error(`Bad metric name: ${family.name}`);
    if (seen.has(family.name)) throw new Error(`Metric family twice: ${family.name}`);
    seen.add(family.name);
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`);
    for (const sample of family.samples) {
      lines.push(`${family.name}${labelText(sample.labels)} ${valueText(sample.value)}`);
    }
  }
  return lines.join("\n") + "\n";
}

function labelText(labels: Readonly<Record<string, string>> | undefined): string {
  const entries = Object.entries(labels ?? {});
  if (entries.length === 0) return "";
  for (const [name] of entries) {
    if (!LABEL.test(name) || name.startsWith("__")) throw new Error(`Bad label: ${name}`);
  }
  return `{${entries.map(([name, value]) => `${name}="${escapeLabel(value)}"`).join(",")}}`;
}

function valueText(value: number | bigint): string {
  if (typeof value === "bigint") return value.toString();
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

function escapeHelp(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}
