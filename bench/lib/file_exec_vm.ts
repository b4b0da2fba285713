/**
 * The guest side of the file_exec benchmark: open()+close() and exec loops with aegisbpf's BPF-LSM
 * programs attached (holding many file and exec deny entries, none of which the loops hit) against the
 * same programs detached, in one boot. Run inside the qemu guest, where BPF-LSM loads, both by the full
 * benchmark (bench/suites/file_exec.ts, boots of its own) and by tests/vm/inside/bench_file_exec_test.ts
 * (few rounds, in the VM suite's boots). Emulation distorts absolute times: only same-boot ratios mean
 * anything.
 */
import type { BpfLink, BpfObject } from "../../ffi/mod.ts";
import {
  EXEC_LSM_PROGRAMS,
  FILE_LSM_PROGRAMS,
  GUARD_LSM_PROGRAMS,
  PTRACE_LSM_PROGRAMS,
} from "../../lib/kernel/load.ts";
import { loadPrograms } from "../../lib/kernel/object.ts";
import { statxStamp } from "../../ffi/mod.ts";
import { parseExecutableMappings } from "../../lib/policy/facts.ts";
import type { ResolvedInode } from "../../lib/kernel/entries.ts";
import { inodeOf, writeRules } from "../../tests/support/slice.ts";
import { withProgramStats } from "./bpf_stats.ts";
import { interleave } from "./stats.ts";
import { exists } from "../../lib/kernel/pin_dir.ts";

/** Where the VM harness puts the bench/native loops it compiled on the host (harness.ts GUEST_WORKER_DIR). */
export const GUEST_NATIVE_DIR = "/usr/lib/aegisbpf-tests";
/** The line that carries the result out of the guest on the serial console. */
export const RESULT_MARKER = "AEGIS_BENCH_FILE_EXEC";
/** Programs that must run in the loops (the result reports every attached program that ran, per loop). */
export const STAT_PROGRAMS = ["aegis_file_open", "aegis_bprm_check", "aegis_mmap_file"] as const;
export const STRESSORS = ["open", "exec", "fork", "rename", "sock"] as const;

export type GuestOptions = {
  rounds: number;
  openIterations: number;
  execIterations: number;
  fileRules: number;
  execRules: number;
  /** Allow entries of the exec allowlist variant (exec.default deny): inode numbers no file has, but the loop's. */
  allowRules: number;
  /** stress-ng seconds per stressor and variant; 0 skips stress-ng. */
  stressSeconds: number;
  /** Also measure the exec loop under fapolicyd (when its files are in the guest). */
  fapolicyd: boolean;
};

/** Samples by variant: `off` and `offAgain` (the A/A control) with the programs detached, `on` attached. */
export type Samples = { off: number[]; offAgain: number[]; on: number[] };

export type GuestResult = {
  kernel: string;
  options: GuestOptions;
  /** ns per open()+close(). */
  open: Samples;
  /** ns per fork+exec+wait. */
  exec: Samples;
  /**
   * ns per fork+exec+wait under an exec allowlist: exec.default deny with `allowRules` allow entries (the
   * loop's binary, the loader and libc among them, each stamped as a hashed entry is), attached vs detached.
   */
  execAllowlist: Samples;
  /** bogo-ops per second (real time) by stressor. */
  stress: Record<string, Samples>;
  /** ns per fork+exec+wait: none, fapolicyd running (aegisbpf detached), or why it could not run. */
  fapolicyd: { none: number[]; fapolicyd: number[] } | { error: string } | null;
  /** The kernel's accounting (bpf_stats) of every attached program that ran in one loop of each kind. */
  programStats: LoopProgramStat[];
};

/** One program's runs and run time during one open loop or one exec loop (per op: runs / iterations). */
export type LoopProgramStat = { loop: "open" | "exec"; program: string; runs: number; nsPerRun: number };

/** The LSM programs a file or exec policy attaches (lib/kernel/links.ts): the areas' and the ptrace guard. */
const LSM_PROGRAMS = [
  ...FILE_LSM_PROGRAMS,
  ...EXEC_LSM_PROGRAMS,
  ...GUARD_LSM_PROGRAMS,
  ...PTRACE_LSM_PROGRAMS,
];

async function run(command: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  const d = new TextDecoder();
  if (!out.success) throw new Error(`${command} ${args.join(" ")} failed: ${d.decode(out.stderr).trim()}`);
  return d.decode(out.stdout) + d.decode(out.stderr);
}

async function loopNs(command: string, args: string[]): Promise<number> {
  const text = (await run(command, args)).trim();
  const ns = Number(text);
  if (!Number.isFinite(ns) || ns <= 0) throw new Error(`${command} printed ${JSON.stringify(text)}`);
  return ns;
}

/** Deny entries on `dev` for inode numbers no file has: every lookup misses. */
function unusedInodes(dev: number, count: number, first: bigint, ruleId: number): ResolvedInode[] {
  return Array.from({ length: count }, (_, i) => ({ dev, ino: first + BigInt(i), ruleId }));
}

/** Attaches and detaches the loaded LSM programs. */
class Switch {
  #links: BpfLink[] = [];
  constructor(readonly object: BpfObject) {}
  on(): void {
    if (this.#links.length === 0) {
      this.#links = LSM_PROGRAMS.map((name) => this.object.program(name).attach());
    }
  }
  off(): void {
    for (const link of this.#links.splice(0)) link.close();
  }
}

/** bpf_stats of every attached program that ran during one loop. */
async function loopStats(loop: LoopProgramStat["loop"], measure: () => Promise<number>) {
  const stats = await withProgramStats(LSM_PROGRAMS, async () => void await measure());
  return stats.filter((stat) => stat.runs > 0).map((stat): LoopProgramStat => ({ loop, ...stat }));
}

const STRESS_USER = "aegisbench";

/** stress-ng runs as an unprivileged user: its exec stressor refuses to run as root. */
function addStressUser(dir: string): void {
  const passwd = Deno.readTextFileSync("/etc/passwd");
  if (!passwd.includes(`${STRESS_USER}:`)) {
    Deno.writeTextFileSync("/etc/passwd", `${passwd}${STRESS_USER}:x:1000:1000::/tmp:/bin/sh\n`);
  }
  Deno.chmodSync(dir, 0o777);
}

/** One stress-ng run of `stressor`: bogo-ops per second of real time. */
async function stressOps(stressor: string, seconds: number, dir: string): Promise<number> {
  const yaml = `${dir}/stress-${stressor}.yaml`;
  const command = `stress-ng --${stressor} 1 --timeout ${seconds}s --metrics-brief --temp-path ${dir} ` +
    `--yaml ${yaml}`;
  const output = await run("su", ["-s", "/bin/sh", STRESS_USER, "-c", command]);
  if (!exists(yaml)) throw new Error(`stress-ng --${stressor} wrote no result: ${output.trim()}`);
  const match = /bogo-ops-per-second-real-time:\s*([\d.]+)/.exec(Deno.readTextFileSync(yaml));
  const ops = Number(match?.[1]);
  if (!match || !(ops > 0)) throw new Error(`stress-ng --${stressor} reported no bogo-ops rate`);
  return ops;
}

export async function measureInGuest(options: GuestOptions): Promise<GuestResult> {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-bench-file-exec-" });
  const openLoop = `${GUEST_NATIVE_DIR}/open_loop`;
  const execLoop = `${GUEST_NATIVE_DIR}/exec_loop`;
  const target = `${dir}/opened`;
  Deno.writeTextFileSync(target, "not named by any rule\n");
  const { dev } = inodeOf(target, 0);
  const object = loadPrograms(LSM_PROGRAMS);
  const links = new Switch(object);
  try {
    writeRules(object, {
      plan: { mode: "enforce" },
      files: unusedInodes(dev, options.fileRules, 1n << 40n, 1),
      exec: unusedInodes(dev, options.execRules, 1n << 41n, 2),
    });
    const openOnce = () => loopNs(openLoop, [target, String(options.openIterations)]);
    const execOnce = () => loopNs(execLoop, [String(options.execIterations)]);
    const variants = (measure: () => Promise<number>) => ({
      off: () => (links.off(), measure()),
      offAgain: () => (links.off(), measure()),
      on: () => (links.on(), measure()),
    });
    const open = await interleave(options.rounds, variants(openOnce));
    const exec = await interleave(options.rounds, variants(execOnce));
    // The allowlist: every exec and executable mapping of every task is judged (no scope), the loop's own
    // files allowed (the hit path: one lookup of the switch, one of the inode, one of its stamp).
    links.off();
    writeRules(object, {
      plan: { mode: "enforce", execDefaultDeny: { ruleId: 3 } },
      execAllow: [
        ...unusedInodes(dev, options.allowRules, 1n << 42n, 4),
        // The loop and what it maps: the loader and libc, as this runtime maps them too.
        ...[execLoop, ...parseExecutableMappings(Deno.readTextFileSync("/proc/self/maps"))].map((path) => ({
          ...inodeOf(path, 4),
          ctimeNs: statxStamp(path).ctimeNs,
        })),
      ],
    });
    const execAllowlist = await interleave(options.rounds, variants(execOnce));
    links.off();
    writeRules(object, {
      plan: { mode: "enforce" },
      files: unusedInodes(dev, options.fileRules, 1n << 40n, 1),
      exec: unusedInodes(dev, options.execRules, 1n << 41n, 2),
    });

    const stress: Record<string, Samples> = {};
    if (options.stressSeconds > 0) {
      addStressUser(dir);
      for (const stressor of STRESSORS) {
        stress[stressor] = await interleave(
          options.rounds,
          variants(() => stressOps(stressor, options.stressSeconds, dir)),
          { warmup: false },
        );
      }
    }

    links.off();
    const fapolicyd = options.fapolicyd ? await fapolicydExec(options, execOnce, dir) : null;

    links.on();
    const programStats = [...await loopStats("open", openOnce), ...await loopStats("exec", execOnce)];
    return { kernel: Deno.osRelease(), options, open, exec, execAllowlist, stress, fapolicyd, programStats };
  } finally {
    links.off();
    object.close();
    Deno.removeSync(dir, { recursive: true });
  }
}

/**
 * The exec loop without and with fapolicyd, Debian's file access policy daemon (fanotify permission
 * events), enforcing its usual policy: trusted files (its trust database lists the exec loop and its
 * libraries) may run, nothing else. Started and stopped every round, so the `none` rounds run without it.
 */
async function fapolicydExec(
  options: GuestOptions,
  execOnce: () => Promise<number>,
  dir: string,
): Promise<{ none: number[]; fapolicyd: number[] } | { error: string }> {
  try {
    await fapolicydSetup();
    return await interleave(options.rounds, {
      none: execOnce,
      fapolicyd: async () => {
        const daemon = await fapolicydStart(dir);
        try {
          return await execOnce();
        } finally {
          await fapolicydStop(daemon);
        }
      },
    });
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

const FAPOLICYD = "/usr/sbin/fapolicyd";

async function fapolicydSetup(): Promise<void> {
  if (!exists(FAPOLICYD)) {
    throw new Error(`${FAPOLICYD} is not in the guest (scripts/setup.sh --bench downloads it)`);
  }
  const loader = Deno.realPathSync("/lib64/ld-linux-x86-64.so.2");
  const trusted = [
    `${GUEST_NATIVE_DIR}/exec_loop`,
    loader,
    Deno.realPathSync("/lib/x86_64-linux-gnu/libc.so.6"),
  ];
  const lines = [];
  for (const path of trusted) {
    const sum = (await run("sha256sum", [path])).split(/\s+/)[0];
    lines.push(`${path} ${Deno.statSync(path).size} ${sum}`);
  }
  Deno.mkdirSync("/etc/fapolicyd/rules.d", { recursive: true });
  for (const d of ["/var/lib/fapolicyd", "/run/fapolicyd", "/var/log"]) {
    Deno.mkdirSync(d, { recursive: true });
  }
  Deno.writeTextFileSync("/etc/fapolicyd/fapolicyd.trust", lines.join("\n") + "\n");
  Deno.writeTextFileSync(
    "/etc/fapolicyd/fapolicyd.conf",
    Deno.readTextFileSync("/etc/fapolicyd/fapolicyd.conf")
      .replace(/^uid = .*$/m, "uid = root").replace(/^gid = .*$/m, "gid = root")
      .replace(/^trust = .*$/m, "trust = file")
      .replace(/^watch_fs = .*$/m, "watch_fs = tmpfs,rootfs,ramfs")
      .replace(/^do_stat_report = .*$/m, "do_stat_report = 0"),
  );
  // Its usual policy in short: trusted files run, anything else is refused; every open is allowed.
  Deno.writeTextFileSync(
    "/etc/fapolicyd/compiled.rules",
    "allow perm=execute all : trust=1\nallow perm=open all : all\ndeny_audit perm=execute all : all\n",
  );
}

/** Starts fapolicyd in the foreground (its log in `dir`); resolves once it listens for events. */
async function fapolicydStart(dir: string): Promise<Deno.ChildProcess> {
  const log = `${dir}/fapolicyd.log`;
  const child = new Deno.Command("sh", {
    args: ["-c", `exec ${FAPOLICYD} --debug-deny 2>"$1"`, "fapolicyd", log],
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  child.status.then(() => exited = true);
  const text = () => {
    try {
      return Deno.readTextFileSync(log);
    } catch {
      return "";
    }
  };
  for (let waited = 0; !text().includes("Starting to listen for events"); waited += 200) {
    if (exited || waited > 120_000) {
      if (!exited) child.kill("SIGKILL");
      await child.status;
      throw new Error(`fapolicyd did not start: ${text().trim().split("\n").slice(-8).join(" | ")}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  // It judges once a program its trust database does not list is refused (its marks may take a moment
  // after it says it listens).
  const started = text();
  for (let tries = 0;; tries++) {
    try {
      await new Deno.Command("/usr/bin/true").output();
    } catch (error) {
      if (error instanceof Deno.errors.PermissionDenied) break;
      throw error;
    }
    if (tries === 60) {
      await fapolicydStop(child);
      throw new Error(
        "fapolicyd runs but let an untrusted program run for 30 s: it is not enforcing; its log: " +
          (text() || started).trim().split("\n").slice(-12).join(" | "),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return child;
}

async function fapolicydStop(child: Deno.ChildProcess): Promise<void> {
  child.kill("SIGTERM");
  await child.status;
}

/** Parameters the host passes on the kernel command line (`aegis.file_exec=full`) for a full run. */
export function guestOptionsFromCmdline(cmdline: string): GuestOptions {
  const full = /\baegis\.file_exec=full\b/.test(cmdline);
  return full
    ? {
      rounds: 7,
      openIterations: 20_000,
      execIterations: 60,
      fileRules: 10_000,
      execRules: 1_000,
      allowRules: 100_000,
      stressSeconds: 2,
      fapolicyd: true,
    }
    : {
      rounds: 3,
      openIterations: 5_000,
      execIterations: 10,
      fileRules: 10_000,
      execRules: 1_000,
      allowRules: 100_000,
      stressSeconds: 0,
      fapolicyd: false,
    };
}
