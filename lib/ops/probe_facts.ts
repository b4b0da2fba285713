/**
 * What `policy lint` and `policy simulate` need to know of this host about a policy's probes
 * (lib/policy/checks_report.ts): whether each can run here, the addresses the names they connect to
 * resolve to, and the resolvers a resolve probe queries. Reads files and asks the host's resolver
 * (`getent ahosts`, as the probe itself does); never touches the kernel.
 */
import { cgroup2Root } from "../kernel/cgroup.ts";
import { parseHostPort, probeAction } from "../policy/checks.ts";
import { probeEntries, type ProbeFacts, probeKey } from "../policy/checks_report.ts";
import { parseResolvConf } from "../policy/facts.ts";
import type { Policy } from "../policy/schema.ts";
import { isIP } from "node:net";

/** How long lint waits for a name to resolve. */
const RESOLVE_TIMEOUT_MS = 3_000;

export async function gatherProbeFacts(policy: Pick<Policy, "spec">): Promise<ProbeFacts> {
  const problems = new Map<string, { key: string; message: string }[]>();
  const addresses = new Map<string, string[]>();
  const entries = probeEntries(policy);
  if (entries.length === 0) return { problems, addresses, resolvers: [] };
  let root: string | undefined;
  try {
    root = cgroup2Root();
  } catch {
    root = undefined;
  }
  const scope = policy.spec.scope?.cgroups?.[0] ?? "";
  for (const entry of entries) {
    const found: { key: string; message: string }[] = [];
    const { probe } = entry;
    const { action, target } = probeAction(probe);
    const shell = action === "connect" ? "bash" : "sh";
    if (!which(shell)) {
      found.push({ key: action, message: `${shell} is not installed (the probe runs in ${shell})` });
    }
    if (action === "exec" || action === "open") {
      const problem = action === "exec" ? executableProblem(target) : readableProblem(target);
      if (problem) found.push({ key: action, message: problem });
    }
    const name = action === "resolve" ? target : action === "connect"
      ? (() => {
        const parsed = parseHostPort(target);
        return typeof parsed === "string" || isIP(parsed.host) ? undefined : parsed.host;
      })()
      : undefined;
    if (action === "resolve" && !which("getent")) {
      found.push({ key: action, message: "getent is not installed (a resolve probe runs getent ahosts)" });
    } else if (name !== undefined) {
      const resolved = addresses.get(name) ?? await resolveHere(name);
      addresses.set(name, resolved);
      if (resolved.length === 0) found.push({ key: action, message: `${name} does not resolve here` });
    }
    if (root === undefined) found.push({ key: action, message: "cgroup v2 is not mounted" });
    else if (probe.in !== undefined) {
      if (!isDirectory(`${root}${probe.in}`)) {
        found.push({ key: "in", message: `the cgroup ${probe.in} does not exist` });
      }
    } else if (scope !== "" && !isDirectory(`${root}${scope}`)) {
      found.push({
        key: action,
        message: `the scope cgroup ${scope}, under which the probe's own cgroup is made, does not exist`,
      });
    }
    if (found.length > 0) problems.set(probeKey(entry), found);
  }
  let resolvers: string[] = [];
  try {
    resolvers = parseResolvConf(Deno.readTextFileSync("/etc/resolv.conf"));
  } catch {
    // No resolv.conf: a resolve probe's queries go nowhere known.
  }
  return { problems, addresses, resolvers };
}

function executableProblem(path: string): string | undefined {
  try {
    const stat = Deno.statSync(path);
    if (!stat.isFile) return `${path} is not a regular file`;
    if (((stat.mode ?? 0) & 0o111) === 0) return `${path} is not executable`;
    return undefined;
  } catch (error) {
    return error instanceof Deno.errors.NotFound ? `${path} does not exist` : `${path}: ${error}`;
  }
}

function readableProblem(path: string): string | undefined {
  try {
    Deno.statSync(path);
    return undefined;
  } catch (error) {
    return error instanceof Deno.errors.NotFound ? `${path} does not exist` : `${path}: ${error}`;
  }
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

const PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

function which(program: string): boolean {
  return PATH.some((dir) => executableProblem(`${dir}/${program}`) === undefined);
}

/** The addresses `name` resolves to with the host's resolver (getent ahosts), or none. */
async function resolveHere(name: string): Promise<string[]> {
  try {
    const child = new Deno.Command("getent", {
      args: ["ahosts", name],
      stdout: "piped",
      stderr: "null",
      stdin: "null",
    }).spawn();
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // Ended.
      }
    }, RESOLVE_TIMEOUT_MS);
    const { code, stdout } = await child.output();
    clearTimeout(timer);
    if (code !== 0) return [];
    const found = new TextDecoder().decode(stdout).split("\n").map((line) => line.split(/\s+/)[0] ?? "")
      .filter((addr) => isIP(addr) !== 0);
    return [...new Set(found)];
  } catch {
    return [];
  }
}
