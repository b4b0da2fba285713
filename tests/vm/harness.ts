/**
 * Boots a Debian cloud kernel under qemu (TCG software emulation) with an initramfs that holds busybox,
 * deno, libbpf, the project tree and an offline deno cache, runs `deno test` inside the guest and brings
 * the results back over the serial console.
 *
 * The initramfs serves both kernels: it holds each kernel's modules (those tests/vm/modules names, as
 * `scripts/setup.sh --test` unpacked them) under /lib/modules/RELEASE/, and /init loads the running
 * kernel's in order before the tests. It is cached under
 * `${AEGISBPF_CACHE:-/var/cache/aegisbpf-dev}/initramfs/` by a hash of everything that goes into it and
 * is rebuilt automatically when any input changes.
 *
 * Set `AEGIS_VM_VERBOSE=1` to stream the guest console to stderr while it runs.
 *
 * The guest, as inside tests see it: PID 1 is a busybox shell script, every tool in /usr/bin (/bin is a
 * link to it) is a symlink to one static busybox, so a copy or hard link of one of them runs only under a
 * busybox applet name or a name ending in "busybox"; deno is /usr/bin/deno; the project is at /aegisbpf
 * (the working directory); root is a writable initramfs; no network device (only `lo`); the modules of
 * tests/vm/modules loaded; env AEGIS_IN_VM=1, CI=true, NO_COLOR=1; tests run with `--no-check --cached-only`, so every
 * import must be resolvable from the DENO_DIR prepared on the host (dynamic imports need literal specifiers).
 */

import { createHash, type Hash } from "node:crypto";
import { basename, dirname, join, posix, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export type VmKernel = "6.1" | "6.12";

export interface VmOptions {
  kernel: VmKernel;
  /** Paths relative to the repository root, passed to `deno test` inside the guest. */
  testPaths: string[];
  /** Wall-clock limit for one boot; qemu is killed when it runs out. */
  timeoutMs?: number;
  /** More kernel command line words, which the guest reads in /proc/cmdline (e.g. a benchmark's rounds). */
  kernelArgs?: string[];
  /** Host executables copied into the guest at the same path, with the shared libraries `ldd` lists. */
  extraBinaries?: string[];
  /** Host directories whose contents are copied into the guest's root as they are (an unpacked .deb). */
  extraTrees?: string[];
}

export interface VmResult {
  kernel: string;
  /** Debian package the kernel came from, e.g. linux-image-6.1.0-56-cloud-amd64-unsigned. */
  package: string;
  passed: number;
  failed: number;
  ignored: number;
  /** Exit status of `deno test` inside the guest. */
  exitCode: number;
  /** Console output of `deno test` inside the guest (ANSI codes and carriage returns removed). */
  output: string;
  /** Wall-clock time from starting qemu to its exit: kernel boot, tests and power-off. */
  durationMs: number;
  /** Time spent building the initramfs for this run; 0 when the cached archive was used. */
  initramfsMs: number;
}

/** Bump when the layout of the initramfs changes in a way the hashed inputs do not capture. */
const FORMAT_VERSION = "aegis-vm-initramfs-3";
// The whole guest run: boot and every inside test (the 6.1 guest under TCG takes the longest).
const DEFAULT_TIMEOUT_MS = 30 * 60 * 1000;
/** How long qemu may take to power off after the guest printed its exit line. */
const POWEROFF_GRACE_MS = 30 * 1000;
/** How many cached archives to keep; older ones are deleted. */
const KEEP_ARCHIVES = 3;
/** Staging trees older than this belong to a run that was killed. */
const STALE_STAGING_MS = 60 * 60 * 1000;

const EXIT_MARKER = "AEGIS_VM_EXIT";
const START_MARKER = "AEGIS_VM_START";

/** Guest paths. */
const GUEST_PROJECT = "/aegisbpf";
const GUEST_DENO_DIR = "/opt/deno_dir";
const GUEST_LIB_DIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"];

const LIBBPF = "/usr/lib/x86_64-linux-gnu/libbpf.so.1";
const BUSYBOX_CANDIDATES = ["/usr/bin/busybox", "/bin/busybox"];
const BPFTOOL_CANDIDATES = ["/usr/sbin/bpftool", "/sbin/bpftool"];
/** Top-level entries of the repository that are not copied into the guest. */
const EXCLUDE_TOP = new Set([".git", "node_modules", ".cache", "dist"]);
/** Entries skipped at any depth. */
const EXCLUDE_ANY = new Set([".git", "node_modules"]);

export const repoRoot: string = resolve(fileURLToPath(new URL("../../", import.meta.url)));

export function cacheRoot(): string {
  return Deno.env.get("AEGISBPF_CACHE") || "/var/cache/aegisbpf-dev";
}

export function kernelDir(kernel: VmKernel): string {
  return join(cacheRoot(), "kernels", kernel);
}

const MODULES_FILE = "tests/vm/modules";
const VM_KERNELS: readonly VmKernel[] = ["6.1", "6.12"];

/** The module names tests/vm/modules lists. */
export function wantedModules(): string[] {
  const text = Deno.readTextFileSync(join(repoRoot, MODULES_FILE));
  return text.split("\n").map((line) => line.trim()).filter((line) => line && !line.startsWith("#"));
}

/**
 * Whether setup.sh unpacked every module tests/vm/modules lists for `kernel` (the cache is shared by
 * checkouts, so it may hold more).
 */
export function modulesReady(kernel: VmKernel): boolean {
  try {
    const cached = Deno.readTextFileSync(join(kernelDir(kernel), "modules", "list")).split(/\s+/);
    return wantedModules().every((name) => cached.includes(name));
  } catch {
    return false;
  }
}

/** Each downloaded kernel's unpacked modules and load order, for /lib/modules/RELEASE/ in the guest. */
function kernelModules(): HostFile[] {
  return VM_KERNELS.flatMap((kernel) => {
    const dir = join(kernelDir(kernel), "modules");
    if (!isFile(join(dir, "load"))) return [];
    const release = Deno.readTextFileSync(join(dir, "release")).trim();
    return [...Deno.readDirSync(dir)]
      .filter((entry) => entry.isFile && (entry.name.endsWith(".ko") || entry.name === "load"))
      .map((entry) => ({ src: join(dir, entry.name), dest: `/usr/lib/modules/${release}/${entry.name}` }));
  });
}

/** Where inside tests find the C workers of tests/support and bench/native (the guest has no compiler). */
export const GUEST_WORKER_DIR = "/usr/lib/aegisbpf-tests";
const WORKERS: Record<string, string[]> = {
  "tests/support": ["packet_worker", "route_worker", "ptrace_worker", "tun_worker"],
  // The loops of the file_exec benchmark (bench/lib/file_exec_vm.ts), also run by an inside test.
  "bench/native": ["open_loop", "exec_loop"],
};

/**
 * The C workers, compiled on the host (cached by a hash of their sources) for the guest: they link against
 * the C library deno already brings into the initramfs.
 */
async function testWorkers(): Promise<HostFile[]> {
  const files: HostFile[] = [];
  for (const [dir, workers] of Object.entries(WORKERS)) files.push(...await compileWorkers(dir, workers));
  return files;
}

async function compileWorkers(dir: string, workers: string[]): Promise<HostFile[]> {
  const support = join(repoRoot, dir);
  const headers = [...Deno.readDirSync(support)].filter((e) => e.name.endsWith(".h")).map((e) => e.name)
    .sort();
  const files: HostFile[] = [];
  for (const worker of workers) {
    const hash = createHash("sha256");
    for (const name of [`${worker}.c`, ...headers]) hash.update(Deno.readFileSync(join(support, name)));
    const dir = join(cacheRoot(), "workers", hash.digest("hex").slice(0, 16));
    const binary = join(dir, worker);
    if (!isFile(binary)) {
      Deno.mkdirSync(dir, { recursive: true });
      await runOrThrow("clang", [
        "-O2",
        "-Wall",
        "-Werror",
        "-o",
        `${binary}.tmp`,
        join(support, `${worker}.c`),
      ], {});
      Deno.renameSync(`${binary}.tmp`, binary);
    }
    files.push({ src: binary, dest: `${GUEST_WORKER_DIR}/${worker}` });
  }
  return files;
}

/** Returns the paths of the kernel image and its package file, or null when the kernel is not downloaded. */
export function findKernel(kernel: VmKernel): { vmlinuz: string; package: string } | null {
  const dir = kernelDir(kernel);
  const vmlinuz = join(dir, "vmlinuz");
  if (!isFile(vmlinuz)) return null;
  let pkg = `unknown ${kernel} kernel package`;
  try {
    pkg = Deno.readTextFileSync(join(dir, "package")).trim() || pkg;
  } catch {
    // The package name is only used in messages.
  }
  return { vmlinuz, package: pkg };
}

/** Host tools and files the harness needs; returns a description of each one that is missing. */
export function missingHostTools(): string[] {
  const missing: string[] = [];
  if (!findOnPath("qemu-system-x86_64")) missing.push("qemu-system-x86_64 (apt-get install qemu-system-x86)");
  if (!findOnPath("cpio")) missing.push("cpio (apt-get install cpio)");
  if (!findOnPath("gzip")) missing.push("gzip (apt-get install gzip)");
  if (!findOnPath("ldd")) missing.push("ldd (apt-get install libc-bin)");
  if (!findBusybox()) missing.push("a static busybox (apt-get install busybox-static)");
  if (!isFile(LIBBPF)) missing.push(`${LIBBPF} (apt-get install libbpf1)`);
  return missing;
}

export async function runInVm(opts: VmOptions): Promise<VmResult> {
  const kernel = findKernel(opts.kernel);
  if (!kernel) {
    throw new Error(
      `Kernel ${opts.kernel} is not downloaded (no ${join(kernelDir(opts.kernel), "vmlinuz")}): ` +
        "run scripts/setup.sh --test",
    );
  }
  if (opts.testPaths.length === 0) throw new Error("No test paths given");
  const missing = missingHostTools();
  if (missing.length > 0) throw new Error(`Missing host tools: ${missing.join(", ")}`);

  const built = await ensureInitramfs(opts);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const where = `kernel ${opts.kernel} (${kernel.package})`;
  let boot = await bootQemu(kernel.vmlinuz, built.path, timeoutMs, opts.kernelArgs ?? []);
  if (!boot.timedOut && !cleanConsole(boot.console).includes(`${START_MARKER} `)) {
    // The guest died before its tests began (a kernel panic during boot under TCG emulation, seen now and
    // then on both kernels): none of our code ran, so it boots once more, and says so.
    console.warn(
      `The VM with ${where} stopped before its tests began (qemu exit status ${boot.qemuStatus}); ` +
        `booting it once more. Console tail:\n${tailLines(boot.console, 40)}`,
    );
    boot = await bootQemu(kernel.vmlinuz, built.path, timeoutMs, opts.kernelArgs ?? []);
  }
  const tail = () => tailLines(boot.console, 80);

  if (boot.timedOut) {
    throw new Error(
      `The VM with ${where} did not finish within ${Math.round(timeoutMs / 1000)} s and was killed; ` +
        `console tail:\n${tail()}`,
    );
  }
  const exitCode = parseExitCode(boot.console);
  if (exitCode === null) {
    throw new Error(
      `The VM with ${where} printed no ${EXIT_MARKER} line (qemu exit status ${boot.qemuStatus}` +
        `${boot.qemuStderr ? `, qemu stderr: ${boot.qemuStderr.trim()}` : ""}); console tail:\n${tail()}`,
    );
  }
  const summary = parseDenoSummary(boot.console);
  if (!summary) {
    throw new Error(
      `No deno test summary line in the console of the VM with ${where} (exit code ${exitCode}); ` +
        `console tail:\n${tail()}`,
    );
  }
  return {
    kernel: opts.kernel,
    package: kernel.package,
    ...summary,
    exitCode,
    output: innerOutput(boot.console),
    durationMs: boot.durationMs,
    initramfsMs: built.buildMs,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Console parsing

/** Removes ANSI escape sequences and carriage returns. */
export function cleanConsole(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_]|c)/g, "")
    .replace(/\r/g, "");
}

/** Parses the last deno test summary line, e.g. `ok | 3 passed | 0 failed | 1 ignored (2s)`. */
export function parseDenoSummary(text: string): { passed: number; failed: number; ignored: number } | null {
  const lines = cleanConsole(text).split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = (lines[i] ?? "").trim();
    const m = /^(ok|FAILED) \|(.*)$/.exec(line);
    if (!m) continue;
    const counts = { passed: 0, failed: 0, ignored: 0 };
    let sawPassed = false;
    for (const part of (m[2] ?? "").split("|")) {
      const c = /^\s*(\d+) (passed|failed|ignored)\b/.exec(part);
      if (!c) continue;
      const n = Number(c[1]);
      if (c[2] === "passed") {
        counts.passed = n;
        sawPassed = true;
      } else if (c[2] === "failed") counts.failed = n;
      else counts.ignored = n;
    }
    if (sawPassed) return counts;
  }
  return null;
}

/**
 * What deno test printed about the guest's failures: its ERRORS section (each failed test's name and error,
 * up to the FAILURES list), at most `limit` characters; empty when there is none. The whole console can be
 * cut short where it is shown, so a failure names itself in the error that fails the host test.
 */
export function failureSection(text: string, limit = 6000): string {
  const lines = cleanConsole(text).split("\n");
  const start = lines.findIndex((line) => line.trim() === "ERRORS");
  if (start < 0) return "";
  const end = lines.findIndex((line, index) => index > start && line.trim() === "FAILURES");
  const section = lines.slice(start + 1, end < 0 ? undefined : end).join("\n").trim();
  return section.length > limit ? `${section.slice(0, limit)}\n[... cut at ${limit} characters]` : section;
}

/** Returns the exit code from the last `AEGIS_VM_EXIT <code>` line, or null. */
export function parseExitCode(text: string): number | null {
  const matches = [...cleanConsole(text).matchAll(new RegExp(`^${EXIT_MARKER} (\\d+)\\s*$`, "gm"))];
  const last = matches.at(-1);
  return last ? Number(last[1]) : null;
}

/** The part of the console between the start and exit markers: the output of deno test. */
function innerOutput(text: string): string {
  const clean = cleanConsole(text);
  const start = clean.lastIndexOf(`${START_MARKER} `);
  const end = clean.lastIndexOf(`${EXIT_MARKER} `);
  if (start < 0 || end < start) return clean;
  const endOfLine = clean.indexOf("\n", end);
  return clean.slice(start, endOfLine < 0 ? clean.length : endOfLine).trimEnd();
}

function tailLines(text: string, n: number): string {
  return cleanConsole(text).trimEnd().split("\n").slice(-n).join("\n");
}

// ---------------------------------------------------------------------------------------------------------
// qemu

interface BootResult {
  console: string;
  qemuStatus: number;
  qemuStderr: string;
  timedOut: boolean;
  durationMs: number;
}

async function bootQemu(
  vmlinuz: string,
  initrd: string,
  timeoutMs: number,
  kernelArgs: string[],
): Promise<BootResult> {
  const verbose = Deno.env.get("AEGIS_VM_VERBOSE") === "1";
  const args = [
    "-accel",
    "tcg",
    "-cpu",
    "max",
    "-smp",
    "2",
    "-m",
    "2048",
    "-nographic",
    "-no-reboot",
    // No network device: the guest must not depend on the network.
    "-nic",
    "none",
    "-kernel",
    vmlinuz,
    "-initrd",
    initrd,
    "-append",
    // mitigations=off: speculative-execution mitigations only slow an emulated CPU down.
    ["console=ttyS0 quiet lsm=lockdown,capability,landlock,bpf panic=-1 mitigations=off", ...kernelArgs].join(
      " ",
    ),
  ];
  const started = performance.now();
  const child = new Deno.Command("qemu-system-x86_64", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  let timedOut = false;
  let killed = false;
  const kill = () => {
    if (killed) return;
    killed = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, timeoutMs);
  let graceTimer: ReturnType<typeof setTimeout> | undefined;

  let consoleText = "";
  const readConsole = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout) {
      const s = decoder.decode(chunk, { stream: true });
      consoleText += s;
      if (verbose) Deno.stderr.writeSync(chunk);
      // Once the guest reported its result, do not wait forever for the power-off.
      if (graceTimer === undefined && consoleText.includes(`${EXIT_MARKER} `)) {
        graceTimer = setTimeout(kill, POWEROFF_GRACE_MS);
      }
    }
    consoleText += decoder.decode();
  })();
  const readStderr = new Response(child.stderr).text();

  try {
    const [status, , stderr] = await Promise.all([child.status, readConsole, readStderr]);
    return {
      console: consoleText,
      qemuStatus: status.code,
      qemuStderr: stderr,
      timedOut,
      durationMs: Math.round(performance.now() - started),
    };
  } finally {
    clearTimeout(timer);
    if (graceTimer !== undefined) clearTimeout(graceTimer);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Initramfs

interface HostFile {
  /** Absolute path on the host. */
  src: string;
  /** Absolute path in the guest. */
  dest: string;
}

interface ProjectEntry {
  rel: string;
  kind: "file" | "symlink";
  target?: string;
}

/** Serialises builds within this process; different processes are safe thanks to the atomic rename. */
let building: Promise<unknown> = Promise.resolve();

async function ensureInitramfs(opts: VmOptions): Promise<{ path: string; buildMs: number }> {
  const run = building.then(() => ensureInitramfsNow(opts));
  building = run.catch(() => undefined);
  return await run;
}

async function ensureInitramfsNow(opts: VmOptions): Promise<{ path: string; buildMs: number }> {
  const { testPaths } = opts;
  const started = performance.now();
  const denoBin = Deno.realPathSync(Deno.execPath());
  const busybox = findBusybox();
  if (!busybox) throw new Error("No static busybox found (apt-get install busybox-static)");
  // bpftool: the benchmark reads bpf_stats with it in the guest (bench/lib/bpf_stats.ts).
  const bpftool = BPFTOOL_CANDIDATES.find(isFile);
  const extraBinaries = opts.extraBinaries ?? [];
  const libs = await sharedLibraries([denoBin, LIBBPF, ...(bpftool ? [bpftool] : []), ...extraBinaries]);
  const hostFiles: HostFile[] = [
    { src: denoBin, dest: "/usr/bin/deno" },
    { src: busybox, dest: "/usr/bin/busybox" },
    ...libs,
  ];
  const applets = await busyboxApplets(busybox);
  hostFiles.push(...kernelModules(), ...await testWorkers());
  const project = walkProject(repoRoot);
  const init = initScript(testPaths);

  const hash = createHash("sha256");
  hash.update(`${FORMAT_VERSION}\0${init}\0${applets.join(",")}\0`);
  for (const f of hostFiles) {
    const st = Deno.statSync(f.src);
    hash.update(`host\0${f.src}\0${f.dest}\0${st.size}\0${st.mtime?.getTime()}\0`);
  }
  for (const e of project) hashProjectEntry(hash, e);
  const trees = (opts.extraTrees ?? []).map((dir) => ({ dir, entries: walkTree(dir) }));
  for (const tree of trees) {
    for (const e of tree.entries) hashTreeEntry(hash, tree.dir, e);
  }
  const key = hash.digest("hex").slice(0, 24);

  const dir = join(cacheRoot(), "initramfs");
  Deno.mkdirSync(dir, { recursive: true });
  const archive = join(dir, `${key}.cpio.gz`);
  if (isFile(archive)) {
    const now = new Date();
    Deno.utimeSync(archive, now, now);
    return { path: archive, buildMs: 0 };
  }

  const staging = Deno.makeTempDirSync({ dir, prefix: ".staging-" });
  try {
    const root = join(staging, "root");
    layoutRoot(root);
    for (const f of hostFiles) copyHostFile(f, root);
    for (const applet of applets) {
      const link = join(root, "usr/bin", applet);
      if (!exists(link)) Deno.symlinkSync("busybox", link);
    }
    writeEtc(root);
    Deno.writeTextFileSync(join(root, "init"), init, { mode: 0o755 });
    Deno.chmodSync(join(root, "init"), 0o755);

    const guestProject = join(root, GUEST_PROJECT);
    copyProject(project, repoRoot, guestProject);
    for (const tree of trees) {
      copyProject(tree.entries.filter((e) => !exists(join(root, e.rel))), tree.dir, root);
    }
    await prepareDenoDir(guestProject, join(root, GUEST_DENO_DIR), testPaths);
    await runLdconfig(root);

    const tmpArchive = join(staging, "initramfs.cpio.gz");
    await packCpio(root, tmpArchive);
    Deno.renameSync(tmpArchive, archive);
  } finally {
    Deno.removeSync(staging, { recursive: true });
  }
  pruneArchives(dir, archive);
  return { path: archive, buildMs: Math.round(performance.now() - started) };
}

function layoutRoot(root: string): void {
  for (
    const d of [
      "usr/bin",
      "usr/sbin",
      "usr/lib/x86_64-linux-gnu",
      "usr/lib64",
      "etc",
      "proc",
      "sys",
      "dev",
      "tmp",
      "run",
      "root",
      "var/tmp",
      "opt",
    ]
  ) {
    Deno.mkdirSync(join(root, d), { recursive: true });
  }
  Deno.chmodSync(join(root, "tmp"), 0o1777);
  // Merged /usr, as on Debian 12.
  Deno.symlinkSync("usr/bin", join(root, "bin"));
  Deno.symlinkSync("usr/sbin", join(root, "sbin"));
  Deno.symlinkSync("usr/lib", join(root, "lib"));
  Deno.symlinkSync("usr/lib64", join(root, "lib64"));
  // The kernel opens /dev/console for /init before devtmpfs is mounted. If mknod fails, the kernel's
  // built-in initramfs still has the node, and /init reopens the console after mounting devtmpfs.
  new Deno.Command("mknod", {
    args: ["-m", "600", join(root, "dev/console"), "c", "5", "1"],
    stdout: "null",
    stderr: "null",
  }).outputSync();
}

function writeEtc(root: string): void {
  const etc = join(root, "etc");
  Deno.writeTextFileSync(join(etc, "passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  Deno.writeTextFileSync(join(etc, "group"), "root:x:0:\n");
  Deno.writeTextFileSync(join(etc, "hosts"), "127.0.0.1 localhost\n::1 localhost ip6-localhost\n");
  Deno.writeTextFileSync(join(etc, "hostname"), "aegis-vm\n");
  Deno.writeTextFileSync(join(etc, "nsswitch.conf"), "passwd: files\ngroup: files\nhosts: files\n");
  Deno.writeTextFileSync(join(etc, "ld.so.conf"), GUEST_LIB_DIRS.join("\n") + "\n");
}

/** Maps a host path to its merged-/usr equivalent, which is how the guest lays out its tree. */
function usrMerged(p: string): string {
  for (const top of ["/lib64/", "/lib/", "/bin/", "/sbin/"]) {
    if (p.startsWith(top)) return `/usr${p}`;
  }
  return p;
}

function copyHostFile(f: HostFile, root: string): void {
  const real = Deno.realPathSync(f.src);
  const realDest = usrMerged(real === f.src ? f.dest : real);
  const wantDest = usrMerged(f.dest);
  const realAbs = join(root, realDest);
  Deno.mkdirSync(dirname(realAbs), { recursive: true });
  if (!exists(realAbs)) Deno.copyFileSync(real, realAbs);
  if (wantDest !== realDest) {
    const linkAbs = join(root, wantDest);
    Deno.mkdirSync(dirname(linkAbs), { recursive: true });
    if (!exists(linkAbs)) Deno.symlinkSync(posix.relative(posix.dirname(wantDest), realDest), linkAbs);
  }
}

/** Every shared library `ldd` lists for the given objects, including the dynamic loader. */
async function sharedLibraries(objects: string[]): Promise<HostFile[]> {
  const seen = new Map<string, HostFile>();
  const add = (p: string) => {
    if (!seen.has(p)) seen.set(p, { src: p, dest: p });
  };
  for (const obj of objects) {
    if (obj !== objects[0]) add(obj);
    const out = await new Deno.Command("ldd", { args: [obj], stdout: "piped", stderr: "piped" }).output();
    const text = new TextDecoder().decode(out.stdout);
    if (!out.success) throw new Error(`ldd ${obj} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
    for (const line of text.split("\n")) {
      const arrow = /^\s*\S+ => (\/\S+) \(0x[0-9a-f]+\)/.exec(line);
      const direct = /^\s*(\/\S+) \(0x[0-9a-f]+\)/.exec(line);
      const notFound = /^\s*(\S+) => not found/.exec(line);
      if (notFound) throw new Error(`ldd ${obj}: ${notFound[1]} not found`);
      const p = arrow?.[1] ?? direct?.[1];
      if (p) add(p);
    }
  }
  // The loader must also be reachable at the path baked into the binaries (/lib64/ld-linux-x86-64.so.2):
  // /lib64 is a symlink to usr/lib64 in the guest, and copyHostFile keeps that name.
  return [...seen.values()].sort((a, b) => a.src.localeCompare(b.src));
}

async function busyboxApplets(busybox: string): Promise<string[]> {
  const out = await new Deno.Command(busybox, { args: ["--list"], stdout: "piped", stderr: "null" }).output();
  if (!out.success) throw new Error(`${busybox} --list failed`);
  return new TextDecoder().decode(out.stdout).split("\n").map((s) => s.trim())
    .filter((s) => /^[\w.[-]+$/.test(s) && s !== "busybox" && s !== "deno").sort();
}

function walkProject(root: string): ProjectEntry[] {
  return walkTree(root, (name, top) => EXCLUDE_ANY.has(name) || (top && EXCLUDE_TOP.has(name)));
}

function walkTree(root: string, skip: (name: string, top: boolean) => boolean = () => false): ProjectEntry[] {
  const entries: ProjectEntry[] = [];
  const walk = (rel: string) => {
    for (const e of Deno.readDirSync(rel ? join(root, rel) : root)) {
      if (skip(e.name, !rel)) continue;
      const childRel = rel ? `${rel}/${e.name}` : e.name;
      if (e.isSymlink) {
        entries.push({ rel: childRel, kind: "symlink", target: Deno.readLinkSync(join(root, childRel)) });
      } else if (e.isDirectory) {
        walk(childRel);
      } else if (e.isFile) {
        entries.push({ rel: childRel, kind: "file" });
      }
    }
  };
  walk("");
  return entries.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

function hashProjectEntry(hash: Hash, e: ProjectEntry): void {
  hashTreeEntry(hash, repoRoot, e);
}

function hashTreeEntry(hash: Hash, root: string, e: ProjectEntry): void {
  if (e.kind === "symlink") {
    hash.update(`link\0${e.rel}\0${e.target}\0`);
    return;
  }
  const abs = join(root, e.rel);
  const st = Deno.statSync(abs);
  hash.update(`file\0${e.rel}\0${st.mode ?? 0}\0${st.size}\0`);
  hash.update(Deno.readFileSync(abs));
}

function copyProject(entries: ProjectEntry[], from: string, to: string): void {
  for (const e of entries) {
    const dest = join(to, e.rel);
    Deno.mkdirSync(dirname(dest), { recursive: true });
    if (e.kind === "symlink") Deno.symlinkSync(e.target ?? "", dest);
    else Deno.copyFileSync(join(from, e.rel), dest);
  }
}

/**
 * Fills the guest's DENO_DIR on the host: npm packages named in deno.lock are copied from the host's
 * deno cache when present (so a rebuild needs no network), then `deno install` and `deno cache` fetch
 * whatever is still missing, for the import map and for every module the guest tests import.
 */
async function prepareDenoDir(project: string, denoDir: string, testPaths: string[]): Promise<void> {
  Deno.mkdirSync(denoDir, { recursive: true });
  await seedNpmCache(project, denoDir);
  const env = { DENO_DIR: denoDir, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", DENO_NO_PROMPT: "1" };
  const deno = Deno.execPath();

  const hasConfig = isFile(join(project, "deno.json")) || isFile(join(project, "deno.jsonc")) ||
    isFile(join(project, "package.json"));
  if (hasConfig) await runOrThrow(deno, ["install", "--quiet"], { cwd: project, env });

  const modules = new Set<string>();
  for (const p of ["tests/vm/inside", ...testPaths]) {
    const abs = resolve(project, p);
    if (isFile(abs)) modules.add(relative(project, abs));
    else if (isDir(abs)) { for (const m of listModules(abs)) modules.add(relative(project, m)); }
  }
  if (modules.size > 0) {
    await runOrThrow(deno, ["cache", "--allow-import", ...[...modules].sort()], { cwd: project, env });
  }
}

async function seedNpmCache(project: string, denoDir: string): Promise<void> {
  let lock: { npm?: Record<string, unknown> };
  try {
    lock = JSON.parse(Deno.readTextFileSync(join(project, "deno.lock")));
  } catch {
    return;
  }
  const hostDenoDir = await hostDenoCacheDir();
  if (!hostDenoDir) return;
  const hostRegistry = join(hostDenoDir, "npm", "registry.npmjs.org");
  const guestRegistry = join(denoDir, "npm", "registry.npmjs.org");
  for (const key of Object.keys(lock.npm ?? {})) {
    const at = key.indexOf("@", 1);
    if (at < 0) continue;
    const name = key.slice(0, at);
    const version = key.slice(at + 1).split("_")[0] ?? "";
    const src = join(hostRegistry, name, version);
    if (!version || !isDir(src)) continue;
    const dest = join(guestRegistry, name, version);
    if (exists(dest)) continue;
    Deno.mkdirSync(dirname(dest), { recursive: true });
    await runOrThrow("cp", ["-a", src, dest], {});
    const registryJson = join(hostRegistry, name, "registry.json");
    if (isFile(registryJson)) Deno.copyFileSync(registryJson, join(guestRegistry, name, "registry.json"));
  }
}

async function hostDenoCacheDir(): Promise<string | null> {
  const fromEnv = Deno.env.get("DENO_DIR");
  if (fromEnv) return fromEnv;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).output();
  if (!out.success) return null;
  try {
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { denoDir?: unknown };
    return typeof info.denoDir === "string" ? info.denoDir : null;
  } catch {
    return null;
  }
}

function listModules(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) out.push(...listModules(p));
    else if (e.isFile && /\.(ts|tsx|mts|js|mjs|jsx)$/.test(e.name)) out.push(p);
  }
  return out;
}

/** Writes /etc/ld.so.cache for the guest tree so that dlopen("libbpf.so.1") and friends resolve. */
async function runLdconfig(root: string): Promise<void> {
  const ldconfig = ["/sbin/ldconfig", "/usr/sbin/ldconfig"].find(isFile);
  if (!ldconfig) return; // LD_LIBRARY_PATH in /init covers this.
  await runOrThrow(ldconfig, ["-r", root], {});
}

async function packCpio(root: string, archive: string): Promise<void> {
  const script =
    'cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1 >"$2"';
  const cmd = ["-o", "pipefail", "-c", script, "pack", root, archive];
  await runOrThrow("bash", cmd, {});
}

/** Deletes all but the newest archives, and staging trees left behind by killed runs. */
function pruneArchives(dir: string, keep: string): void {
  const archives: { path: string; mtime: number }[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (e.isDirectory && e.name.startsWith(".staging-")) {
      const p = join(dir, e.name);
      const age = Date.now() - (Deno.statSync(p).mtime?.getTime() ?? Date.now());
      if (age > STALE_STAGING_MS) Deno.removeSync(p, { recursive: true });
      continue;
    }
    if (!e.isFile || !e.name.endsWith(".cpio.gz")) continue;
    const p = join(dir, e.name);
    archives.push({ path: p, mtime: Deno.statSync(p).mtime?.getTime() ?? 0 });
  }
  archives.sort((a, b) => b.mtime - a.mtime);
  for (const a of archives.slice(KEEP_ARCHIVES)) {
    if (a.path === keep) continue;
    try {
      Deno.removeSync(a.path);
    } catch {
      // Another process may have removed it.
    }
  }
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function initScript(testPaths: string[]): string {
  const paths = testPaths.map(shellQuote).join(" ");
  return `#!/bin/sh
# Generated by tests/vm/harness.ts: PID 1 of the test VM.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "aegis-init: $*"; }
mnt() { mkdir -p "$4" 2>/dev/null; mount -t "$1" -o "$3" "$2" "$4" || say "mounting $1 on $4 failed"; }

mnt proc proc nosuid,nodev,noexec /proc
mnt sysfs sysfs nosuid,nodev,noexec /sys
mnt devtmpfs devtmpfs mode=0755 /dev
exec 0</dev/console 1>/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mnt devpts devpts gid=5,mode=620 /dev/pts
mnt tmpfs tmpfs mode=1777 /dev/shm
mnt securityfs securityfs nosuid,nodev,noexec /sys/kernel/security
mnt bpf bpf mode=0700 /sys/fs/bpf
mnt tmpfs tmpfs mode=1777 /tmp
mnt tmpfs tmpfs mode=0755 /run
mnt cgroup2 cgroup2 nsdelegate /sys/fs/cgroup
[ -e /proc/self/fd ] && ln -sf /proc/self/fd /dev/fd
ip link set lo up || say "bringing up lo failed"
# The modules of tests/vm/modules for this kernel, dependencies first (scripts/setup.sh ordered them).
kmods=/lib/modules/$(uname -r)
if [ -f "$kmods/load" ]; then
  while read -r module; do insmod "$kmods/$module" || say "insmod $module failed"; done <"$kmods/load"
fi
hostname aegis-vm
# Keep kernel messages from interleaving with the test output; they are printed afterwards on failure.
echo 1 >/proc/sys/kernel/printk

export HOME=/root
export USER=root
export DENO_DIR=${GUEST_DENO_DIR}
export DENO_NO_UPDATE_CHECK=1
export DENO_NO_PROMPT=1
export LD_LIBRARY_PATH=${GUEST_LIB_DIRS.join(":")}
export AEGIS_IN_VM=1
export CI=true
export NO_COLOR=1
export TERM=dumb

cd ${GUEST_PROJECT} || say "no project directory"
boot_msgs=$(dmesg | wc -l)
echo "${START_MARKER} kernel=$(uname -r)"
deno test --no-check --allow-all --cached-only ${paths}
rc=$?
if [ "$rc" != 0 ]; then
  echo "aegis-init: deno test exited with $rc; kernel messages logged during the tests:"
  dmesg | tail -n "+$((boot_msgs + 1))" | tail -n 40
fi
echo "${EXIT_MARKER} $rc"
sync
sleep 1
poweroff -f
`;
}

// ---------------------------------------------------------------------------------------------------------
// Small helpers

async function runOrThrow(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> },
): Promise<void> {
  const out = await new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "piped",
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    ...(opts.env !== undefined ? { env: opts.env } : {}),
  }).output();
  if (!out.success) {
    const d = new TextDecoder();
    throw new Error(
      `${basename(cmd)} ${args.join(" ")} failed with status ${out.code}: ` +
        cleanConsole(d.decode(out.stderr) + d.decode(out.stdout)).trim(),
    );
  }
}

function findBusybox(): string | null {
  return BUSYBOX_CANDIDATES.find(isFile) ?? null;
}

function findOnPath(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    if (dir && isFile(join(dir, name))) return join(dir, name);
  }
  return null;
}

function exists(p: string): boolean {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
}

function isDir(p: string): boolean {
  try {
    return Deno.statSync(p).isDirectory;
  } catch {
    return false;
  }
}
