/**
 * The benchmark suite (root): runs each suite of bench/suites/ in a process of its own, one after another
 * (never two at once: they would measure each other), and writes results.json and RESULTS.md.
 * Usage: deno task bench [-- --quick] [--only connect,ingress] [--out-dir DIR]
 *   --quick     CI's smoke run: fewer rounds and sizes, written to a temporary directory unless --out-dir
 *   --only      run these suites; the other sections of an existing results.json are kept
 * Exits 1 when a suite fails or records no figure.
 */
import { parseArgs } from "node:util";
import { environment } from "./lib/env.ts";
import { renderResults, type Results, type Section } from "./lib/report.ts";
import { renderPublished } from "./published.ts";

/** In the order they run (and appear in RESULTS.md). */
export const SUITES = [
  "connect",
  "names",
  "dns",
  "ingress",
  "file_exec",
  "policy",
  "trust",
  "events",
  "footprint",
  "commands",
] as const;

const { values } = parseArgs({
  // `deno task bench -- --quick` passes the "--" on.
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    "out-dir": { type: "string" },
  },
});
const quick = values.quick ?? false;
const only = values.only?.split(",").map((name) => name.trim()).filter(Boolean);
for (const name of only ?? []) {
  if (!(SUITES as readonly string[]).includes(name)) {
    console.error(`bench: error: --only: no suite ${name} (suites: ${SUITES.join(", ")})`);
    Deno.exit(2);
  }
}
if (Deno.uid() !== 0) {
  console.error("bench: error: run as root: the suites load BPF programs, make namespaces and set sysctls");
  Deno.exit(2);
}
const outDir = values["out-dir"] ??
  (quick
    ? Deno.makeTempDirSync({ prefix: "aegisbpf-bench-quick-" })
    : new URL(".", import.meta.url).pathname);
Deno.mkdirSync(outDir, { recursive: true });
const resultsPath = `${outDir}/results.json`;

let previous: Results | undefined;
if (only) {
  try {
    previous = JSON.parse(Deno.readTextFileSync(resultsPath)) as Results;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

const sections: Section[] = [];
const failures: Results["failures"] = [];
for (const name of only ?? SUITES) {
  const out = Deno.makeTempFileSync({ prefix: `aegisbpf-bench-${name}-`, suffix: ".json" });
  const started = performance.now();
  console.error(`bench: ${name}${quick ? " (quick)" : ""}`);
  const script = new URL(`./suites/${name}.ts`, import.meta.url).pathname;
  const status = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", script, "--out", out, ...(quick ? ["--quick"] : [])],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  const seconds = ((performance.now() - started) / 1000).toFixed(0);
  if (status.success) {
    sections.push(JSON.parse(Deno.readTextFileSync(out)) as Section);
    console.error(`bench: ${name} done in ${seconds} s`);
  } else {
    failures.push({
      suite: name,
      error: `exited with ${status.code} after ${seconds} s (its output is above)`,
    });
    console.error(`bench: ${name} FAILED after ${seconds} s`);
  }
  Deno.removeSync(out);
}

const kept = (previous?.sections ?? []).filter((section) => !sections.some((s) => s.id === section.id));
const ordered = [...kept, ...sections].sort((a, b) =>
  SUITES.indexOf(a.id as typeof SUITES[number]) - SUITES.indexOf(b.id as typeof SUITES[number])
);
const results: Results = { environment: environment(), quick, sections: ordered, failures };
Deno.writeTextFileSync(resultsPath, JSON.stringify(results, null, 2) + "\n");
Deno.writeTextFileSync(`${outDir}/RESULTS.md`, `${renderResults(results)}\n${renderPublished(results)}`);
console.error(`bench: wrote ${resultsPath} and ${outDir}/RESULTS.md`);
const total = sections.reduce((sum, section) => sum + section.figures.length, 0);
console.log(`bench: ${sections.length} suites, ${total} figures, ${failures.length} failed`);
if (failures.length > 0) Deno.exit(1);
