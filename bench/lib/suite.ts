/**
 * The frame of one benchmark suite (bench/suites/NAME.ts): parses `--quick` and `--out FILE`, gives the suite
 * a context to record figures in, and writes its Section as JSON for bench/run.ts. A suite that throws, or
 * records no figure, exits 1: CI's quick run fails when a figure cannot be produced.
 */
import { parseArgs } from "node:util";
import type { Figure, ProgramStat, Section, Table, Target } from "./report.ts";
import { ratios, summarize } from "./stats.ts";

export type SuiteContext = {
  /** The quick run (CI): fewer rounds and sizes, the same code paths. */
  readonly quick: boolean;
  /** `full` in a full run, `quick` in a quick one. */
  pick<T>(full: T, quick: T): T;
  /** A private directory, removed when the suite ends. */
  readonly tmp: string;
  /** Compiles bench/native/NAME.c (clang -O2, `flags` appended) into `tmp`; returns the binary's path. */
  native(name: string, flags?: readonly string[]): Promise<string>;
  /**
   * Records a figure from its samples. With `ratioTo`, the per-round ratio to the figure of that id (already
   * recorded, with as many samples) is kept beside it.
   */
  figure(
    id: string,
    label: string,
    unit: string,
    samples: readonly number[],
    options?: { ratioTo?: string },
  ): Figure;
  method(line: string): void;
  note(text: string): void;
  table(table: Table): void;
  target(target: Target): void;
  programStat(stat: ProgramStat): void;
};

export async function suite(
  id: string,
  title: string,
  run: (ctx: SuiteContext) => Promise<void>,
): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { quick: { type: "boolean", default: false }, out: { type: "string" } },
  });
  const section: Section = {
    id,
    title,
    method: [],
    figures: [],
    tables: [],
    programStats: [],
    targets: [],
    notes: [],
    startedAt: new Date().toISOString(),
    loadAverage: { start: loadAverage(), end: 0 },
  };
  const tmp = Deno.makeTempDirSync({ prefix: `aegisbpf-bench-${id}-` });
  const built = new Map<string, string>();
  const quick = values.quick ?? false;
  const ctx: SuiteContext = {
    quick,
    pick: (full, short) => quick ? short : full,
    tmp,
    async native(name, flags = []) {
      const key = [name, ...flags].join(" ");
      const known = built.get(key);
      if (known) return known;
      const out = `${tmp}/${name}${built.size}`;
      const source = new URL(`../native/${name}.c`, import.meta.url).pathname;
      const result = await new Deno.Command("clang", {
        args: ["-O2", "-Wall", "-o", out, source, ...flags],
        stderr: "piped",
      }).output();
      if (!result.success) {
        throw new Error(`clang ${source} failed: ${new TextDecoder().decode(result.stderr)}`);
      }
      built.set(key, out);
      return out;
    },
    figure(figureId, label, unit, samples, options = {}) {
      if (section.figures.some((f) => f.id === figureId)) {
        throw new Error(`figure ${figureId} recorded twice`);
      }
      if (samples.length === 0 || samples.some((s) => !Number.isFinite(s))) {
        throw new Error(`figure ${figureId}: no samples, or one is not a number (${samples.join(", ")})`);
      }
      const figure: Figure = {
        id: figureId,
        label,
        unit,
        samples: [...samples],
        summary: summarize(samples),
      };
      if (options.ratioTo !== undefined) {
        const base = section.figures.find((f) => f.id === options.ratioTo);
        if (!base) throw new Error(`figure ${figureId}: no figure ${options.ratioTo} to divide by`);
        figure.ratio = { to: base.id, summary: ratios(samples, base.samples) };
      }
      section.figures.push(figure);
      console.error(
        `bench ${id}: ${label}: ${figure.summary.median.toFixed(3)} ${unit}` +
          (figure.ratio ? ` (${figure.ratio.summary.median.toFixed(3)}x ${base(figure.ratio.to)})` : ""),
      );
      return figure;
    },
    method: (line) => void section.method.push(line),
    note: (text) => void section.notes.push(text),
    table: (table) => void section.tables.push(table),
    target: (target) => void section.targets.push(target),
    programStat: (stat) => void section.programStats.push(stat),
  };
  const base = (figureId: string) => section.figures.find((f) => f.id === figureId)?.label ?? figureId;
  let failed = false;
  try {
    await run(ctx);
    if (section.figures.length === 0) throw new Error(`suite ${id} recorded no figure`);
  } catch (error) {
    failed = true;
    console.error(`bench ${id}: error: ${error instanceof Error ? error.stack ?? error.message : error}`);
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
  if (failed) Deno.exit(1);
  section.loadAverage.end = loadAverage();
  const json = JSON.stringify(section, null, 2) + "\n";
  if (values.out) Deno.writeTextFileSync(values.out, json);
  else console.log(json);
}

/** The machine's 1-minute load average: how busy it was while a suite measured (2 cores: above 2, queued). */
function loadAverage(): number {
  return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
}
