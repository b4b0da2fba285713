/**
 * The runbooks (docs/runbooks/*.md) work as written. Every page is run, step by step in page order, as root
 * on this host with private state, configuration and bpffs (runbook_host.ts), each command checked against
 * the exit code the page documents; the few steps a page marks for another kind of host are named in the
 * output with the reason (runbook_steps.ts reads the marks). Before that, every `aegisbpf ...` command line
 * of the runbooks and of the systemd units names a real command and only flags it takes: from the command's
 * own declaration where it exists in main.ts, else from SPEC_COMMANDS below (commands other branches add).
 */
import assert from "node:assert/strict";
import { REGISTRY } from "../../main.ts";
import { type Command, isGroup } from "../../lib/cli/command.ts";
import type { OptionSpecs } from "../../lib/cli/specs.ts";
import { GLOBAL_OPTIONS, HELP_OPTION } from "../../lib/cli/globals.ts";
import { aegisbpf } from "../cli/cli.ts";
import { rootTest } from "../support/privileged.ts";
import { RunbookHost } from "./runbook_host.ts";
import { runbookSteps } from "./runbook_steps.ts";
import { readUnit, REPO } from "./unit_file.ts";

const RUNBOOKS = `${REPO}docs/runbooks/`;
/** The pages an operator reads first: their command lines are checked and run as the runbooks' are. */
const OPERATOR_PAGES = ["SECURITY.md", "docs/COMPATIBILITY.md", "docs/TROUBLESHOOTING.md"];

/** Commands of SPEC section 2 that main.ts may not have yet: flag name -> takes a value. */
const SPEC_COMMANDS: Record<string, Record<string, boolean>> = {
  run: {
    audit: false,
    enforce: false,
    "allow-partial": false, // SPEC section 5
    policy: true,
    ingress: true,
    deadman: true,
    "enforce-signal": true,
    api: true,
    "metrics-textfile": true,
    "metrics-interval": true,
  },
  doctor: { json: false },
  health: { json: false, "require-enforce": false },
  events: { follow: false, json: false },
  metrics: { out: true },
  status: {},
  detach: {},
};

type Known = { path: string; flags: Record<string, boolean> };

const takesValue = (options: OptionSpecs) =>
  Object.fromEntries(
    Object.entries(options).map(([name, spec]) => [name, spec.type === "string" && !spec.optionalValue]),
  );
const GLOBAL_FLAGS = { ...takesValue(GLOBAL_OPTIONS), ...takesValue(HELP_OPTION) };

/** The command `words` start with, and how many words its name takes; undefined when none is known. */
function lookup(words: string[]): { known: Known; used: number } | undefined {
  const [first, second] = words;
  for (const entry of REGISTRY) {
    if (entry.name !== first) continue;
    if (!isGroup(entry)) return { known: declared(entry.name, entry), used: 1 };
    const command = entry.commands.find((c) => c.name === second);
    return command ? { known: declared(`${entry.name} ${command.name}`, command), used: 2 } : undefined;
  }
  const spec = first === undefined ? undefined : SPEC_COMMANDS[first];
  return spec ? { known: { path: first!, flags: spec }, used: 1 } : undefined;
}

function declared(path: string, command: Command): Known {
  return { path, flags: takesValue(command.options) };
}

/** Splits a shell command line into words, keeping quoted strings whole. */
function words(line: string): string[] {
  return [...line.matchAll(/'[^']*'|"[^"]*"|\S+/g)].map((m) => m[0]);
}

/** Problems of one invocation (the words after `aegisbpf`); empty when it is valid. */
export function checkInvocation(args: string[]): string[] {
  // Global flags may come before the command.
  let i = 0;
  while (args[i]?.startsWith("--") && GLOBAL_FLAGS[args[i]!.slice(2)] !== undefined) {
    i += GLOBAL_FLAGS[args[i]!.slice(2)] ? 2 : 1;
  }
  const found = lookup(args.slice(i));
  if (!found) return [`unknown command: ${args.slice(i, i + 2).join(" ")}`];
  const problems: string[] = [];
  const flags = { ...GLOBAL_FLAGS, ...found.known.flags };
  for (let j = i + found.used; j < args.length; j++) {
    const word = args[j]!;
    if (!word.startsWith("--")) continue;
    const value = flags[word.slice(2)];
    if (value === undefined) problems.push(`${found.known.path}: no flag ${word}`);
    else if (value) j++;
  }
  return problems;
}

/** Every `aegisbpf` invocation in the fenced shell blocks of `text`, with its line number. */
export function invocations(text: string): { line: number; args: string[] }[] {
  const found: { line: number; args: string[] }[] = [];
  let block: string | undefined; // the language of the fenced block the line is in
  for (const [index, raw] of text.split("\n").entries()) {
    if (raw.startsWith("```")) {
      block = block === undefined ? raw.slice(3).trim() : undefined;
      continue;
    }
    if (block !== "sh") continue;
    const code = raw.replace(/(^|\s)#.*$/, "");
    for (const match of code.matchAll(/(?:^|[|;&(]|--)\s*aegisbpf\s+(.*?)(?=\s+\d?>|\s*[|;&)]|$)/g)) {
      found.push({ line: index + 1, args: words(match[1]!) });
    }
  }
  return found;
}

Deno.test("every aegisbpf command line in the runbooks is a command with the flags it takes", async () => {
  const problems: string[] = [];
  let count = 0;
  const runbooks = [...Deno.readDirSync(RUNBOOKS)].filter((entry) => entry.name.endsWith(".md"));
  for (const page of [...runbooks.map((entry) => `docs/runbooks/${entry.name}`), ...OPERATOR_PAGES]) {
    for (const { line, args } of invocations(await Deno.readTextFile(REPO + page))) {
      count++;
      problems.push(...checkInvocation(args).map((problem) => `${page}:${line}: ${problem}`));
    }
  }
  assert.deepEqual(problems, []);
  assert.ok(count >= 35, `only ${count} command lines found: is the extraction broken?`);
});

Deno.test("the units run aegisbpf commands with flags they take", () => {
  for (const [name, key] of [["aegisbpf.service", "ExecStart"], ["aegisbpf-metrics.service", "ExecStart"]]) {
    const line = readUnit(name!).get("Service")!.get(key!)![0]!;
    const args = words(line).slice(1).filter((word) => !word.startsWith("$"));
    assert.deepEqual(checkInvocation(args), [], `${name} ${key}`);
  }
  const post = readUnit("aegisbpf.service").get("Service")!.get("ExecStartPost")![0]!;
  assert.match(post, /\/usr\/bin\/aegisbpf \$\$AEGISBPF_OPTS health \$\$AEGISBPF_HEALTH_ARGS/);
});

Deno.test("checkInvocation() catches an unknown command or flag, and knows global flags and values", () => {
  assert.deepEqual(
    checkInvocation(["policy", "apply", "x.yaml", "--canary", "10m", "--max-deny-rate", "5"]),
    [],
  );
  assert.deepEqual(checkInvocation(["--log-format", "json", "health", "--require-enforce"]), []);
  assert.deepEqual(checkInvocation(["policy", "apply", "x.yaml", "--canry", "10m"]), [
    "policy apply: no flag --canry",
  ]);
  assert.deepEqual(checkInvocation(["policy", "revert"]), ["unknown command: policy revert"]);
  assert.deepEqual(checkInvocation(["break-glass", "on", "--reason", "--ttl", "x"]), []);
  assert.deepEqual(
    invocations(
      "text aegisbpf nope\n```sh\naegisbpf version   # aegisbpf bogus\nx | aegisbpf doctor --json\n```\n",
    ),
    [{ line: 3, args: ["version"] }, { line: 4, args: ["doctor", "--json"] }],
  );
});

Deno.test("every policy shown in the runbooks passes `aegisbpf policy validate`", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-runbook-" });
  try {
    let count = 0;
    for (const entry of Deno.readDirSync(RUNBOOKS)) {
      const text = await Deno.readTextFile(RUNBOOKS + entry.name);
      for (const [index, block] of [...text.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].entries()) {
        if (!/^kind: Policy$/m.test(block[1]!)) continue;
        count++;
        const path = `${dir}/${entry.name}-${index}.yaml`;
        await Deno.writeTextFile(path, block[1]!);
        const result = await aegisbpf(["policy", "validate", path]);
        assert.equal(result.code, 0, `${entry.name}: ${result.stdout}${result.stderr}`);
      }
    }
    assert.ok(count >= 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The pages in the order of the rollout (runbooks/README.md), then the ones for any time. */
const PAGES = [
  "README.md",
  "preflight.md",
  "audit.md",
  "canary.md",
  "fleet.md",
  "enforce.md",
  "rollback.md",
  "break-glass.md",
  "egress-allowlist.md",
  "allowlist.md",
  "learn.md",
];

Deno.test("every runbook page is run by the test below", () => {
  const pages = [...Deno.readDirSync(RUNBOOKS)].map((entry) => entry.name).filter((n) => n.endsWith(".md"));
  assert.deepEqual(pages.sort(), [...PAGES].sort());
});

Deno.test("runbookSteps() reads commands, annotations, files and continuations in page order", () => {
  const page = [
    "<!-- test: file p.yaml -->",
    "```yaml",
    "a: 1",
    "```",
    "<!-- test: cgroup /x.slice -->",
    "<!-- test: setup: aegisbpf version -->",
    "<!-- test: exit 3 -->",
    "```sh",
    "aegisbpf policy apply p.yaml   # refused",
    "echo '# kept' \\",
    "  done",
    "```",
    "text",
    "<!-- test: not-run: needs a second host -->",
    "```sh",
    "ssh other aegisbpf health",
    "```",
    "```sh",
    "aegisbpf health",
    "```",
  ].join("\n");
  assert.deepEqual(runbookSteps(page), [
    { kind: "file", line: 2, path: "p.yaml", text: "a: 1\n" },
    { kind: "cgroup", line: 8, path: "/x.slice" },
    { kind: "setup", line: 8, command: "aegisbpf version" },
    { kind: "run", line: 9, command: "aegisbpf policy apply p.yaml", exit: 3 },
    { kind: "run", line: 10, command: "echo '# kept' done", exit: 3 },
    { kind: "not-run", line: 16, command: "ssh other aegisbpf health", why: "needs a second host" },
    { kind: "run", line: 19, command: "aegisbpf health", exit: 0 },
  ]);
  assert.throws(
    () => runbookSteps("<!-- test: skip -->\n```sh\nx\n```\n"),
    /unknown runbook test annotation/,
  );
});

/** Runs one page's steps in order on a private host; returns what was not run, with why. */
async function runPage(name: string, path = RUNBOOKS + name): Promise<string[]> {
  const steps = runbookSteps(await Deno.readTextFile(path));
  const notRun: string[] = [];
  await using host = await RunbookHost.create();
  for (const step of steps) {
    const where = `${name}:${step.line}`;
    if (step.kind === "not-run") {
      notRun.push(`${where}: ${step.command} (not run: ${step.why})`);
    } else if (step.kind === "cgroup") {
      await host.cgroup(step.path);
    } else if (step.kind === "file") {
      const path = host.path(step.path);
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await Deno.writeTextFile(path, step.text);
    } else {
      const expected = step.kind === "setup" ? 0 : step.exit;
      const options = step.kind === "run" && step.stopAfterMs !== undefined
        ? { stopAfterMs: step.stopAfterMs }
        : {};
      const started = Date.now();
      const result = await host.run(step.command, options);
      const seconds = (Date.now() - started) / 1000;
      if (seconds > 20) console.log(`${where}: ${step.command} took ${seconds.toFixed(0)} s`);
      assert.equal(
        result.code,
        expected,
        `${where}: ${step.command}\nexpected exit ${expected}, got ${result.code}:\n${result.output}`,
      );
    }
  }
  return notRun;
}

for (const page of PAGES) {
  rootTest(
    `[root] runbook ${page}: every step runs as written, in order, with the exit code it documents`,
    async () => {
      const notRun = await runPage(page);
      // Said, never skipped silently: each step the page marks for another kind of host, and why.
      if (notRun.length > 0) {
        console.log(`${page}: ${notRun.length} step(s) not run here:\n  ${notRun.join("\n  ")}`);
      }
    },
  );
}

for (const page of OPERATOR_PAGES) {
  rootTest(
    `[root] ${page}: every command line runs as written, with the exit code it documents`,
    async () => {
      const notRun = await runPage(page, REPO + page);
      if (notRun.length > 0) {
        console.log(`${page}: ${notRun.length} step(s) not run here:\n  ${notRun.join("\n  ")}`);
      }
    },
  );
}
