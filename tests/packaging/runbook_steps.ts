/**
 * The steps of a runbook (docs/runbooks/*.md), in order, as the runbook test runs them. A step is one
 * command line of a ```sh block (a line ending in `\` continues on the next). An HTML comment right before a
 * fenced block tells the test about it, invisible to a reader of the rendered page:
 *
 *   <!-- test: exit N -->            every command of the block exits N (default 0)
 *   <!-- test: not-run: WHY -->      the block is not run here; the test reports it with WHY
 *   <!-- test: file NAME -->         the block (yaml, json) is written to NAME before the next step
 *   <!-- test: setup: CMD -->        CMD runs first (repeatable): state a page assumes from an earlier page
 *   <!-- test: stop-after Ns -->     the commands run until stopped: SIGTERM after N seconds, then exit 0
 *   <!-- test: cgroup PATH -->       the cgroup v2 PATH is made before the block and removed after the page
 */

export type Step =
  | { kind: "run"; line: number; command: string; exit: number; stopAfterMs?: number }
  | { kind: "setup"; line: number; command: string }
  | { kind: "file"; line: number; path: string; text: string }
  | { kind: "not-run"; line: number; command: string; why: string }
  | { kind: "cgroup"; line: number; path: string };

type Note = {
  exit?: number;
  notRun?: string;
  file?: string;
  setup: string[];
  cgroups: string[];
  stopAfterMs?: number;
};

const NO_NOTE = (): Note => ({ setup: [], cgroups: [] });

const NOTE = /^<!-- test: (.*) -->$/;

/** The steps of one runbook in page order; throws on an annotation it does not know. */
export function runbookSteps(text: string): Step[] {
  const steps: Step[] = [];
  const lines = text.split("\n");
  let note = NO_NOTE();
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const annotation = NOTE.exec(raw.trim());
    if (annotation) {
      addNote(note, annotation[1]!, i + 1);
      continue;
    }
    if (!/^\s*```/.test(raw)) {
      if (raw.trim() !== "") note = NO_NOTE();
      continue;
    }
    const language = raw.trim().slice(3).trim();
    const start = i + 1;
    const body: string[] = [];
    for (i++; i < lines.length && !/^\s*```/.test(lines[i]!); i++) body.push(lines[i]!);
    steps.push(...note.cgroups.map((path) => ({ kind: "cgroup" as const, line: start, path })));
    steps.push(...note.setup.map((command) => ({ kind: "setup" as const, line: start, command })));
    if (note.file !== undefined) {
      steps.push({ kind: "file", line: start, path: note.file, text: `${body.join("\n")}\n` });
    } else if (language === "sh") {
      for (const { line, command } of commands(body, start + 1)) {
        if (note.notRun !== undefined) {
          steps.push({ kind: "not-run", line, command, why: note.notRun });
        } else {
          steps.push({
            kind: "run",
            line,
            command,
            exit: note.exit ?? 0,
            ...(note.stopAfterMs === undefined ? {} : { stopAfterMs: note.stopAfterMs }),
          });
        }
      }
    } else if (note.exit !== undefined || note.notRun !== undefined) {
      throw new Error(`line ${start}: exit and not-run annotate sh blocks only`);
    }
    note = NO_NOTE();
  }
  return steps;
}

function addNote(note: Note, text: string, line: number): void {
  let match: RegExpExecArray | null;
  if ((match = /^exit (\d)$/.exec(text))) note.exit = Number(match[1]);
  else if ((match = /^not-run: (\S.*)$/.exec(text))) note.notRun = match[1]!;
  else if ((match = /^file (\S+)$/.exec(text))) note.file = match[1]!;
  else if ((match = /^setup: (\S.*)$/.exec(text))) note.setup.push(match[1]!);
  else if ((match = /^cgroup (\/\S+)$/.exec(text))) note.cgroups.push(match[1]!);
  else if ((match = /^stop-after (\d+)s$/.exec(text))) note.stopAfterMs = Number(match[1]) * 1000;
  else throw new Error(`line ${line}: unknown runbook test annotation "${text}"`);
}

/** The command lines of a shell block: comments and blank lines dropped, `\` continuations joined. */
function commands(body: string[], firstLine: number): { line: number; command: string }[] {
  const found: { line: number; command: string }[] = [];
  let pending: { line: number; command: string } | undefined;
  body.forEach((raw, index) => {
    const text = withoutComment(raw).trimEnd();
    if (pending === undefined && text.trim() === "") return;
    const part = text.endsWith("\\") ? text.slice(0, -1) : text;
    pending = pending ? { ...pending, command: `${pending.command} ${part.trim()}` } : {
      line: firstLine + index,
      command: part.trim(),
    };
    if (!text.endsWith("\\")) {
      found.push(pending);
      pending = undefined;
    }
  });
  return found;
}

/** A shell line without its `# comment` (a `#` inside quotes, or inside a word, is kept). */
function withoutComment(line: string): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const char = line[i]!;
    if (quote) {
      if (char === quote) quote = undefined;
    } else if (char === "'" || char === '"') {
      quote = char;
    } else if (char === "#" && (i === 0 || /\s/.test(line[i - 1]!))) {
      return line.slice(0, i);
    }
  }
  return line;
}
