/**
 * Whole-command latency: the wall time of `aegisbpf` commands as a user runs them (`deno run --allow-all
 * main.ts ...`, what `deno task aegisbpf` runs; the compiled binary too where DENORT_BIN lets `deno compile`
 * build one), on a plane with a policy applied, against `deno run` of an empty script (Deno's own start-up)
 * measured twice per round (the A/A control).
 *
 * The plane: a private bpffs, state and config directories (AEGISBPF_* variables), and the socket programs
 * attached to a cgroup of the suite's own (opened once with DataPlane.open before `policy apply` adopts its
 * pinned links), never the root cgroup; the policy has a file rule, an egress rule and a bind rule.
 */
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { suite } from "../lib/suite.ts";
import { interleave } from "../lib/stats.ts";
import { TestBpffs } from "../../tests/support/bpffs.ts";
import { TestCgroup } from "../../tests/support/cgroup.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const MAIN = `${ROOT}main.ts`;
/** What a child Deno needs from the parent's environment; the rest is the plane's directories. */
const PASSED_ENV = ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "DENO_NO_UPDATE_CHECK"];

/** A command as measured: its words, and the exit codes it gives on this plane. */
type Measured = { id: string; label: string; words: string[]; exit: readonly number[] };

const COMMANDS: readonly Measured[] = [
  { id: "help", label: "aegisbpf --help", words: ["--help"], exit: [0] },
  { id: "version", label: "aegisbpf version", words: ["version"], exit: [0] },
  { id: "health", label: "aegisbpf health", words: ["health"], exit: [0] },
  { id: "status", label: "aegisbpf status", words: ["status"], exit: [0] },
  // 1 where an area is unavailable (BPF-LSM refused here): the same work either way.
  { id: "doctor", label: "aegisbpf doctor", words: ["doctor"], exit: [0, 1] },
  { id: "metrics", label: "aegisbpf metrics", words: ["metrics"], exit: [0] },
  {
    id: "validate",
    label: "aegisbpf policy validate (3 rules)",
    words: ["policy", "validate", "POLICY"],
    exit: [0],
  },
];

await suite("commands", "Whole-command latency", async (ctx) => {
  const rounds = ctx.pick(15, 3);
  const empty = `${ctx.tmp}/empty.ts`;
  Deno.writeTextFileSync(empty, "");
  const policy = `${ctx.tmp}/policy.yaml`;
  const denied = `${ctx.tmp}/secret`;
  Deno.writeTextFileSync(denied, "secret\n");
  Deno.writeTextFileSync(policy, policyText(denied));

  const bpffs = await TestBpffs.mount();
  const cgroup = TestCgroup.create();
  try {
    const env = planeEnv(bpffs.path, ctx.tmp);
    // The socket programs attach to the suite's cgroup: `policy apply` adopts these pinned links.
    DataPlane.open({ bpffs: bpffs.path, cgroupPath: cgroup.path, areas: ["file", "egress", "bind"] }).close();
    const applied = await runOnce([Deno.execPath(), "run", "--allow-all", MAIN], [
      "policy",
      "apply",
      policy,
      "--allow-partial",
    ], env);
    if (applied.code !== 0) throw new Error(`policy apply exited with ${applied.code}: ${applied.stderr}`);

    const programs: { tag: string; argv: string[] }[] = [
      { tag: "", argv: [Deno.execPath(), "run", "--allow-all", MAIN] },
    ];
    const binary = await compiled(ctx.tmp);
    if (binary) programs.push({ tag: "compiled ", argv: [binary] });
    else {
      ctx.note(
        "The compiled binary was not measured: `deno compile` needs its runtime (denort), which this machine " +
          "cannot download; set DENORT_BIN to a denort binary to measure it too.",
      );
    }

    const timer = await ctx.native("command_time");
    const cpu: Record<string, number[]> = {};
    /** A variant: returns the wall time, keeps the CPU time beside it. */
    const variant = (id: string, argv: readonly string[], exit: readonly number[]) => async () => {
      const sample = await timed(timer, argv, env, exit);
      (cpu[id] ??= []).push(sample.cpuMs);
      return sample.wallMs;
    };
    const deno = [Deno.execPath(), "run", "--allow-all", empty];
    const variants: Record<string, () => Promise<number>> = {
      "deno-empty": variant("deno-empty", deno, [0]),
      "deno-empty-aa": variant("deno-empty-aa", deno, [0]),
    };
    for (const { tag, argv } of programs) {
      for (const command of COMMANDS) {
        const words = command.words.map((word) => word === "POLICY" ? policy : word);
        const id = `${tag}${command.id}`;
        variants[id] = variant(id, [...argv, ...words], command.exit);
      }
    }
    ctx.method(
      `${rounds} interleaved rounds (order rotating each round, one unrecorded warm-up of each); one sample is ` +
        "the wall time from fork to the process's exit (bench/native/command_time.c, output to /dev/null), and " +
        "beside it the CPU time (user + system) it used, from wait4's rusage: on a shared machine the CPU " +
        "time is the steadier figure.",
    );
    ctx.method(
      "Baseline: `deno run --allow-all` of an empty script, Deno's own start-up; measured twice per round " +
        "(A/A). Every command is also a per-round ratio to it.",
    );
    ctx.method(
      "The plane: a private bpffs, state and config directories, a policy with a file, an egress and a bind " +
        "rule applied through `policy apply`, socket programs on a cgroup of the suite's own; no agent running.",
    );
    const samples = await interleave(rounds, variants);
    // The warm-up's CPU sample is not a round's.
    for (const id of Object.keys(cpu)) cpu[id] = cpu[id]!.slice(1);

    const medians: Record<string, number> = {};
    const cpuMedians: Record<string, number> = {};
    for (
      const [kind, unit, measured, into] of [["", "ms", samples, medians], [
        "cpu.",
        "ms CPU",
        cpu,
        cpuMedians,
      ]] as const
    ) {
      const what = kind ? " (CPU time)" : "";
      ctx.figure(
        `${kind}deno-empty`,
        `deno run of an empty script (baseline)${what}`,
        unit,
        measured["deno-empty"]!,
      );
      ctx.figure(
        `${kind}deno-empty-aa`,
        `deno run of an empty script (A/A)${what}`,
        unit,
        measured["deno-empty-aa"]!,
        {
          ratioTo: `${kind}deno-empty`,
        },
      );
      for (const { tag } of programs) {
        for (const command of COMMANDS) {
          const id = `${tag}${command.id}`;
          const label = `${tag ? "compiled: " : ""}${command.label}${what}`;
          const figure = ctx.figure(`${kind}${id.replace(" ", "-")}`, label, unit, measured[id]!, {
            ratioTo: `${kind}deno-empty`,
          });
          into[id] = figure.summary.median;
        }
      }
    }
    for (const { tag } of programs) {
      const how = tag ? "compiled binary" : "deno run main.ts";
      ctx.target({
        name: `health, whole command (${how})`,
        want: "<= 150 ms",
        got: `${medians[`${tag}health`]!.toFixed(0)} ms median (${
          cpuMedians[`${tag}health`]!.toFixed(0)
        } ms CPU)`,
        met: medians[`${tag}health`]! <= 150,
      });
      ctx.target({
        name: `--help, whole command (${how})`,
        want: "<= 100 ms",
        got: `${medians[`${tag}help`]!.toFixed(0)} ms median (${
          cpuMedians[`${tag}help`]!.toFixed(0)
        } ms CPU)`,
        met: medians[`${tag}help`]! <= 100,
      });
    }
    const health = JSON.parse((await runOnce(programs[0]!.argv, ["health", "--json"], env)).stdout);
    ctx.note(
      `health's own check (pins, applied record, mode words, counters, agent record, stale-rule stat of ` +
        `${health.staleRules?.checked ?? 0} inode) took ${health.tookMs} ms of it (its --json tookMs); the ` +
        "rest is Deno's start-up and loading the command's modules. Old connections were " +
        (health.connections === null ? "not listed (this kernel closed them at apply)" : "listed") + ".",
    );
  } finally {
    DataPlane.detach(bpffs.path);
    await bpffs.unmount();
    cgroup.remove();
  }
});

function policyText(denied: string): string {
  return `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: bench-commands, version: 1 }
spec:
  mode: enforce
  files:
    deny: [{ id: secret, path: ${denied} }]
  network:
    egress:
      deny: [{ id: test-net, cidr: 192.0.2.0/24 }]
    bind:
      deny: [{ id: port, port: 61998, protocol: tcp }]
`;
}

function planeEnv(bpffs: string, dir: string): Record<string, string> {
  const config = `${dir}/etc`;
  const state = `${dir}/state`;
  for (const path of [config, state]) Deno.mkdirSync(path, { mode: 0o700 });
  const inherited = PASSED_ENV.flatMap((name) => {
    const value = Deno.env.get(name);
    return value === undefined ? [] : [[name, value]];
  });
  return {
    ...Object.fromEntries(inherited),
    AEGISBPF_BPFFS: bpffs,
    AEGISBPF_STATE_DIR: state,
    AEGISBPF_CONFIG_DIR: config,
    NO_COLOR: "1",
  };
}

async function runOnce(
  argv: readonly string[],
  words: readonly string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [program, ...before] = argv;
  const result = await spawn(program!, [...before, ...words], env);
  const text = new TextDecoder();
  return { code: result.code, stdout: text.decode(result.stdout), stderr: text.decode(result.stderr) };
}

/** Runs `program` from the repository's root with `env` alone, no input, its output captured. */
function spawn(
  program: string,
  args: readonly string[],
  env: Record<string, string>,
): Promise<Deno.CommandOutput> {
  return new Deno.Command(program, {
    args: [...args],
    env,
    clearEnv: true,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
}

/**
 * One run through bench/native/command_time: its wall and CPU times in ms. An exit code not in `exit` fails
 * the suite with the command's stderr.
 */
async function timed(
  timer: string,
  argv: readonly string[],
  env: Record<string, string>,
  exit: readonly number[],
): Promise<{ wallMs: number; cpuMs: number }> {
  const result = await spawn(timer, argv, env);
  const [wallNs, userUs, sysUs, code] = new TextDecoder().decode(result.stdout).trim().split(" ").map(Number);
  if (!result.success || code === undefined || !exit.includes(code)) {
    throw new Error(
      `${argv.join(" ")} exited with ${code ?? result.code}: ${new TextDecoder().decode(result.stderr)}`,
    );
  }
  return { wallMs: wallNs! / 1e6, cpuMs: (userUs! + sysUs!) / 1000 };
}

/** The compiled binary where DENORT_BIN gives `deno compile` its runtime; undefined elsewhere. */
async function compiled(tmp: string): Promise<string | undefined> {
  if (!Deno.env.get("DENORT_BIN")) return undefined;
  const output = `${tmp}/aegisbpf`;
  const result = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "--allow-all",
      "--include",
      `${ROOT}bpf/build/aegis.bpf.o`,
      "--include",
      `${ROOT}policies`,
      "--output",
      output,
      MAIN,
    ],
    cwd: ROOT,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!result.success) {
    throw new Error(`deno compile failed (DENORT_BIN is set): ${new TextDecoder().decode(result.stderr)}`);
  }
  return output;
}
