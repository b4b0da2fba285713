/**
 * The host facts lint needs, read from the host (files and /proc only; no kernel objects). Kept apart from
 * `lint.ts` so that lint stays a pure function of the policy and these facts.
 */
import { join } from "node:path";
import { DPKG_CACHE_FILE, DpkgDatabaseError, resolveDpkgTrust } from "../dpkg/trust.ts";
import { AEGISBPF_BINARY, DPKG_PATH, type LintFacts, type PathFact } from "./lint.ts";
import type { Policy } from "./schema.ts";

const SSHD_PATHS = ["/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd"];
/** An exec rule also denies mapping a file executable: these are mapped by every dynamically linked program. */
const DYNAMIC_LINKING_PATHS = [
  "/lib64/ld-linux-x86-64.so.2",
  "/lib/ld-linux-aarch64.so.1",
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/lib/aarch64-linux-gnu/libc.so.6",
];

/** libbpf, which aegisbpf opens (dlopen: a mapping with PROT_EXEC) before it loads anything. */
const LIBBPF_PATHS = [
  "/lib/x86_64-linux-gnu/libbpf.so.1",
  "/usr/lib/x86_64-linux-gnu/libbpf.so.1",
  "/lib/aarch64-linux-gnu/libbpf.so.1",
  "/usr/lib/aarch64-linux-gnu/libbpf.so.1",
];

export type FactOptions = {
  /** The aegisbpf state directory, protected as a whole. */
  stateDir?: string;
  /** The aegisbpf configuration directory (trusted keys, break-glass marker): never files.protect'ed. */
  configDir?: string;
  /** The aegisbpf binary; the running executable unless given. */
  binary?: string;
  /**
   * A file's ctime in ns (lib/kernel/resolve.ts `ctimeNsOf`), for `trust: dpkg`'s cache, whose keys the
   * apply writes with it: without it the cache is read in whole seconds and none of its entries match.
   */
  ctimeNs?: (path: string) => bigint;
  /** Where SSH_CONNECTION comes from; the process environment unless given. */
  sshConnection?: string | undefined;
};

export async function gatherLintFacts(policy: Policy, options: FactOptions = {}): Promise<LintFacts> {
  // Straight from the two lists: a fleet policy's 100,000 network rules need no entry built here.
  const denied = [
    ...policy.spec.files?.deny ?? [],
    ...policy.spec.exec?.deny ?? [],
    ...policy.spec.files?.protect ?? [],
    ...policy.spec.exec?.allow ?? [],
  ].flatMap((rule) => rule.path === undefined ? [] : [rule.path]);
  // And the programs rules name (exe), which must exist too unless optional.
  const { egress, bind } = policy.spec.network ?? {};
  const writers = policy.spec.files?.writers ?? [];
  for (
    const rule of [
      ...egress?.deny ?? [],
      ...egress?.allow ?? [],
      ...egress?.users ?? [],
      ...bind?.deny ?? [],
      ...writers,
    ]
  ) {
    if (rule.exe !== undefined && !denied.includes(rule.exe)) denied.push(rule.exe);
  }
  const paths = new Map<string, PathFact>();
  for (const path of denied) {
    const fact = await pathFact(path);
    if (fact) paths.set(path, fact);
  }
  const sshClient = parseSshConnection(
    "sshConnection" in options ? options.sshConnection : Deno.env.get("SSH_CONNECTION"),
  );
  const forwarding = readForwarding();
  const dpkgOwners = await protectedDpkgOwners(policy);
  const trust = policy.spec.exec?.allow?.some((rule) => rule.trust !== undefined)
    ? dpkgFacts(options)
    : undefined;
  return {
    ...trust && { trust },
    resolvers: parseResolvConf(await readText("/etc/resolv.conf")),
    sshPorts: parseSshdPorts(await readText("/etc/ssh/sshd_config")),
    ...sshClient && { sshClient },
    ...await survivalSet(options),
    ownDirectories: await ownDirectories(options),
    paths,
    ...await ptraceScope(),
    now: new Date(),
    ...forwarding && { forwarding },
    ...dpkgOwners && { dpkgOwners },
  };
}

const DPKG_INFO = "/var/lib/dpkg/info";

/** The owners of the policy's protected paths, when it protects any and no writer runs dpkg. */
async function protectedDpkgOwners(policy: Policy): Promise<Map<string, string> | undefined> {
  const protect = policy.spec.files?.protect ?? [];
  const writers = policy.spec.files?.writers ?? [];
  if (
    protect.length === 0 || writers.some((writer) => writer.exe === DPKG_PATH || writer.exe === "/bin/dpkg")
  ) {
    return undefined;
  }
  return await dpkgOwners(protect, DPKG_INFO);
}

/**
 * The dpkg package that owns each of `entries`' paths, from the file lists of `infoDir`
 * (/var/lib/dpkg/info/PACKAGE.list, one path a line): the path itself, or for a recursive entry a file
 * below it. Undefined when there is no dpkg database (not a Debian host).
 */
export async function dpkgOwners(
  entries: readonly { path: string; recursive?: boolean | undefined }[],
  infoDir: string,
): Promise<Map<string, string> | undefined> {
  const exact = new Set(entries.map((entry) => entry.path));
  const trees = entries.filter((entry) => entry.recursive).map((entry) => ({
    path: entry.path,
    prefix: `${entry.path.replace(/\/+$/, "")}/`,
  }));
  const owners = new Map<string, string>();
  let lists: Deno.DirEntry[];
  try {
    lists = Array.from(Deno.readDirSync(infoDir)).filter((entry) => entry.name.endsWith(".list"));
  } catch {
    return undefined;
  }
  for (const list of lists.sort((a, b) => a.name.localeCompare(b.name))) {
    const name = list.name.slice(0, -".list".length);
    for (const line of (await readText(`${infoDir}/${list.name}`)).split("\n")) {
      if (exact.has(line) && !owners.has(line)) owners.set(line, name);
      for (const tree of trees) {
        if (line.startsWith(tree.prefix) && !owners.has(tree.path)) owners.set(tree.path, name);
      }
    }
  }
  return owners;
}

/**
 * What `trust: dpkg` gives on this host (lib/dpkg/trust.ts, with the state directory's cache), or why it
 * cannot: the trusted real paths and the files left untrusted.
 */
function dpkgFacts(options: FactOptions): NonNullable<LintFacts["trust"]> {
  try {
    const found = resolveDpkgTrust({
      ...options.stateDir !== undefined && { cacheFile: join(options.stateDir, DPKG_CACHE_FILE) },
      ...options.ctimeNs && { ctimeNs: options.ctimeNs },
    });
    return { trusted: new Set(found.trusted.map((file) => file.path)), untrusted: found.untrusted };
  } catch (error) {
    if (!(error instanceof DpkgDatabaseError)) throw error;
    return { trusted: new Set(), untrusted: [], error: error.message };
  }
}

/** aegisbpf's state and configuration directories that exist here (lint.ts `ownDirectories`). */
async function ownDirectories(options: FactOptions): Promise<NonNullable<LintFacts["ownDirectories"]>> {
  const wanted = [
    ...options.stateDir ? [{ path: options.stateDir, why: "aegisbpf state (history, applied record)" }] : [],
    ...options.configDir
      ? [{ path: options.configDir, why: "aegisbpf configuration (trusted keys, break-glass marker)" }]
      : [],
  ];
  const found: NonNullable<LintFacts["ownDirectories"]>[number][] = [];
  for (const { path, why } of wanted) {
    const fact = await pathFact(path);
    if (fact) found.push({ ...fact, why });
  }
  return found;
}

/** kernel.yama.ptrace_scope, when Yama is built in. */
async function ptraceScope(): Promise<{ ptraceScope?: number }> {
  const value = parsePtraceScope(await readText("/proc/sys/kernel/yama/ptrace_scope"));
  return value === undefined ? {} : { ptraceScope: value };
}

/** The value of /proc/sys/kernel/yama/ptrace_scope text (0-3); undefined when empty or not a number. */
export function parsePtraceScope(text: string): number | undefined {
  const match = /^\s*([0-3])\s*$/.exec(text);
  return match ? Number(match[1]) : undefined;
}

/**
 * Whether this host forwards IPv4 and IPv6 packets (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding,
 * for this process's network namespace); undefined when /proc/sys cannot be read.
 */
export function readForwarding(): { ipv4: boolean; ipv6: boolean } | undefined {
  const flag = (path: string) => {
    try {
      return Deno.readTextFileSync(path).trim() !== "0";
    } catch {
      return undefined;
    }
  };
  const ipv4 = flag("/proc/sys/net/ipv4/ip_forward");
  if (ipv4 === undefined) return undefined;
  return { ipv4, ipv6: flag("/proc/sys/net/ipv6/conf/all/forwarding") ?? false };
}

/** PID 1 always has an executable: when it cannot be read, it is closed to this process, not missing. */
const PID1_EXE = "/proc/1/exe";

async function survivalSet(
  options: FactOptions,
): Promise<{ survival: LintFacts["survival"]; unchecked: NonNullable<LintFacts["unchecked"]>[number][] }> {
  const rootShell = parseRootShell(await readText("/etc/passwd"));
  // `also`: what the exec allowlist needs besides, counted only when no entry above names the same file.
  const wanted: { path: string; why: string; tree?: boolean; also?: boolean }[] = [
    { path: PID1_EXE, why: "PID 1's executable" },
    { path: options.binary ?? Deno.execPath(), why: AEGISBPF_BINARY },
    ...parseShells(await readText("/etc/shells")).map((path) => ({ path, why: "a login shell" })),
    ...SSHD_PATHS.map((path) => ({ path, why: "sshd" })),
    ...DYNAMIC_LINKING_PATHS.map((path) => ({
      path,
      why: "mapped executable by every dynamically linked program",
    })),
    ...options.stateDir ? [{ path: options.stateDir, why: "aegisbpf state", tree: true }] : [],
    { path: "/bin/sh", why: "the shell scripts and system() run", also: true },
    ...rootShell ? [{ path: rootShell, why: "root's shell", also: true }] : [],
    ...LIBBPF_PATHS.map((path) => ({ path, why: "libbpf, which aegisbpf maps executable", also: true })),
    ...parseExecutableMappings(await readText("/proc/self/maps")).map((path) => ({
      path,
      why: "mapped executable by aegisbpf",
      also: true,
    })),
  ];
  const found: LintFacts["survival"][number][] = [];
  const unchecked: NonNullable<LintFacts["unchecked"]>[number][] = [];
  for (const { path, why, tree, also } of wanted) {
    const fact = await readPathFact(path);
    if (!("realPath" in fact)) {
      if (path === PID1_EXE) unchecked.push({ path, why, ...fact });
    } else if (!also || !found.some((entry) => entry.identity === fact.identity)) {
      found.push({ ...fact, why, ...tree && { tree } });
    }
  }
  return { survival: found, unchecked };
}

/** Where a path leads and which inode it is, or undefined when it does not exist or cannot be read. */
export async function pathFact(path: string): Promise<PathFact | undefined> {
  const fact = await readPathFact(path);
  return "realPath" in fact ? fact : undefined;
}

/** The path's fact, or the error that kept it from this process and what to do about it. */
async function readPathFact(path: string): Promise<PathFact | { error: string; remedy: string }> {
  try {
    const realPath = await Deno.realPath(path);
    const info = await Deno.stat(realPath);
    return { realPath, identity: `${info.dev}:${info.ino}` };
  } catch (error) {
    if (!unreadable(error)) throw error;
    return { error: errnoText(error as Error), remedy: unreadableRemedy(error as Error) };
  }
}

/** `EACCES (permission denied)`: the errno the kernel gave, as a person searches for it. */
function errnoText(error: Error): string {
  const code = (error as { code?: unknown }).code;
  const what = error.message.replace(/ \(os error \d+\).*$/s, "").toLowerCase();
  return typeof code === "string" ? `${code} (${what})` : `${error.name}: ${error.message}`;
}

/** Why a path like /proc/1/exe stays closed, and what opens it: guesses only where the facts allow. */
function unreadableRemedy(error: Error): string {
  if (error instanceof Deno.errors.NotCapable) return "run with --allow-all (Deno's permissions refused it)";
  if (error instanceof Deno.errors.NotFound) return "check that /proc is mounted";
  if (Deno.uid() !== 0) return "run lint and apply as root";
  return "the kernel refused root the ptrace check on PID 1 (PID 1 in another user or PID namespace, " +
    "kernel.yama.ptrace_scope=3, or an LSM)";
}

async function readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (unreadable(error)) return "";
    throw error;
  }
}

/** Missing, or closed to this process (by the kernel, or by Deno's permissions: /proc/1/exe needs them all). */
function unreadable(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound || error instanceof Deno.errors.PermissionDenied ||
    error instanceof Deno.errors.NotCapable;
}

/** Nameserver addresses, without an IPv6 zone (`fe80::1%eth0`). */
export function parseResolvConf(text: string): string[] {
  return [...text.matchAll(/^\s*nameserver\s+([^\s#%]+)/gm)].map((match) => match[1]!);
}

/** The `Port` lines of sshd_config; 22 when there is none. */
export function parseSshdPorts(text: string): number[] {
  const ports = [...text.matchAll(/^\s*Port\s+(\d+)\s*$/gim)].map((match) => Number(match[1]));
  return ports.length ? ports : [22];
}

/** The login shell of uid 0 in /etc/passwd text, if any. */
export function parseRootShell(text: string): string | undefined {
  for (const line of text.split("\n")) {
    const fields = line.split(":");
    if (fields[2] === "0" && fields[6]?.startsWith("/")) return fields[6].trim();
  }
  return undefined;
}

/** The files a /proc/PID/maps text maps executable (its program and libraries), each once. */
export function parseExecutableMappings(text: string): string[] {
  const paths = new Set<string>();
  for (const line of text.split("\n")) {
    const match = /^\S+\s+..x.\s+\S+\s+\S+\s+\d+\s+(\/.*)$/.exec(line);
    if (match && !match[1]!.endsWith(" (deleted)")) paths.add(match[1]!);
  }
  return [...paths];
}

export function parseShells(text: string): string[] {
  return text.split("\n").map((line) => line.trim()).filter((line) => line.startsWith("/"));
}

/** SSH_CONNECTION is "client-address client-port server-address server-port". */
export function parseSshConnection(text: string | undefined): LintFacts["sshClient"] {
  const [addr, clientPort, , port] = text?.trim().split(/\s+/) ?? [];
  if (!addr || !port || !/^\d+$/.test(port)) return undefined;
  return clientPort && /^\d+$/.test(clientPort)
    ? { addr, port: Number(port), clientPort: Number(clientPort) }
    : { addr, port: Number(port) };
}
