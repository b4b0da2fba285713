/**
 * Running one self-check probe (spec.checks, lib/policy/checks.ts) for real: a shell child (`bash` for a
 * connect, which opens bash's /dev/tcp; `sh` for the others) that first
 * waits on its stdin, is moved into the probe's cgroup (its pid written to cgroup.procs), and only then is
 * told to act; it runs as the probe's uid and gid from its start. What it does:
 *
 * - connect: opens bash's /dev/tcp or /dev/udp (a connect(2); for UDP that only proves sending is allowed);
 * - open: opens the file for reading;
 * - exec: execs the program with its arguments (the exec is the probe's own process, in its cgroup);
 * - resolve: `getent ahosts NAME` (the host's resolver, NSS and DNS).
 *
 * What it got: `worked`; `denied` (the kernel said EPERM or EACCES: what a policy's deny gives); or `failed`
 * with the reason (ECONNREFUSED and other network answers, a missing file, a program that ran and exited
 * non-zero, a name that does not resolve) or `timeout` (killed after the probe's timeout). A network failure
 * is never taken for a policy denial: a `mustDeny` connect passes only on EPERM/EACCES.
 */

import type { ProbeSpec } from "../policy/checks.ts";
import { DEFAULT_PROBE_TIMEOUT_MS, parseHostPort, parseProbeTimeout, probeAction } from "../policy/checks.ts";

export type ProbeGot = "worked" | "denied" | "failed" | "timeout";
export type ProbeResult = { got: ProbeGot; detail: string };

/** Exit codes the probe's script uses for "the action itself failed" and "never told to act". */
const ACTION_FAILED = 97;
const NOT_STARTED = 98;

/** The script and its arguments for `probe` (after the wait for the go-ahead). */
export function probeCommand(probe: ProbeSpec): { shell: "bash" | "sh"; script: string; args: string[] } {
  const { action, target } = probeAction(probe);
  switch (action) {
    case "connect": {
      const parsed = parseHostPort(target);
      if (typeof parsed === "string") throw new Error(parsed);
      return {
        shell: "bash",
        script: `exec 3<>"/dev/$1/$2/$3" || exit ${ACTION_FAILED}; exit 0`,
        args: [probe.protocol ?? "tcp", parsed.host, String(parsed.port)],
      };
    }
    case "open":
      // In a subshell: a failed redirection of `exec` ends a POSIX shell before its `|| exit`.
      return { shell: "sh", script: `(exec 3<"$1") || exit ${ACTION_FAILED}; exit 0`, args: [target] };
    case "exec":
      return { shell: "sh", script: 'exec "$@"', args: [target, ...probe.args ?? []] };
    case "resolve":
      return {
        shell: "sh",
        script: `getent ahosts "$1" >/dev/null || exit ${ACTION_FAILED}; exit 0`,
        args: [target],
      };
  }
}

/** The probe's timeout in milliseconds. */
export function probeTimeoutMs(probe: ProbeSpec): number {
  if (probe.timeout === undefined) return DEFAULT_PROBE_TIMEOUT_MS;
  const ms = parseProbeTimeout(probe.timeout);
  return typeof ms === "number" ? ms : DEFAULT_PROBE_TIMEOUT_MS;
}

/** What a finished probe got, from its exit code and what bash said (LC_ALL=C). */
export function classifyProbe(probe: ProbeSpec, code: number, stderr: string): ProbeResult {
  const { action } = probeAction(probe);
  const said = lastLine(stderr);
  const denied = /Operation not permitted|Permission denied/.test(stderr);
  if (code === 0) return { got: "worked", detail: action === "exec" ? "ran, exit 0" : "succeeded" };
  if (code === NOT_STARTED) return { got: "failed", detail: "the probe was never told to act" };
  if (action === "exec") {
    // bash reports a failed exec with 126 (refused) or 127 (not found); anything else is the program's exit.
    if (code === 126 && denied) return { got: "denied", detail: `exec refused: ${said}` };
    if (code === 126 || code === 127) return { got: "failed", detail: `exec failed: ${said}` };
    return { got: "failed", detail: `ran, exit ${code}${said ? `: ${said}` : ""}` };
  }
  if (code === ACTION_FAILED && denied && action !== "resolve") {
    return { got: "denied", detail: `refused: ${said}` };
  }
  if (action === "resolve") return { got: "failed", detail: "the name did not resolve" };
  if (/Connection refused/.test(stderr)) {
    return {
      got: "failed",
      detail:
        `${said} (a network answer: nothing listens there, or a firewall reset it; a policy denies with ` +
        "EPERM)",
    };
  }
  return { got: "failed", detail: said || `exit ${code}` };
}

function lastLine(text: string): string {
  const lines = text.trim().split("\n").filter((line) => line.trim() !== "");
  // The shell is named "probe" ($0): bash "probe: line 1: X", dash "probe: 1: exec: X", busybox
  // "probe: exec: line 0: X" or "probe: can't open X".
  return (lines.at(-1) ?? "").replace(/^(probe|(ba)?sh): (line \d+: |\d+: )?(exec: )?(line \d+: )?/, "")
    .trim();
}

export type ProbePlace = {
  /** The cgroup directory (absolute, under the cgroup v2 mount) the probe runs in. */
  cgroupDir: string;
  /** Whether that cgroup is the probe's own (killed whole on timeout with cgroup.kill). */
  own: boolean;
};

/**
 * Runs `probe` in `place` and returns what it got. A probe still running after its timeout is killed
 * (its whole cgroup where it is the probe's own) and `timeout`.
 */
export async function runProbe(
  probe: ProbeSpec,
  place: ProbePlace,
  env: Record<string, string> = {},
): Promise<ProbeResult> {
  const { shell, script, args } = probeCommand(probe);
  const timeoutMs = probeTimeoutMs(probe);
  let child: Deno.ChildProcess;
  try {
    const options = shell === "bash" ? ["--noprofile", "--norc"] : [];
    child = new Deno.Command(shell, {
      args: [...options, "-c", `read -r _ || exit ${NOT_STARTED}; ${script}`, "probe", ...args],
      env: { ...env, PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" },
      clearEnv: true,
      cwd: "/",
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
      ...probe.as && { uid: probe.as.uid, gid: probe.as.gid ?? probe.as.uid },
    }).spawn();
  } catch (error) {
    return {
      got: "failed",
      detail: `could not start the probe: ${error instanceof Error ? error.message : error}`,
    };
  }
  const stderr = new Response(child.stderr).text();
  const writer = child.stdin.getWriter();
  try {
    try {
      Deno.writeTextFileSync(`${place.cgroupDir}/cgroup.procs`, `${child.pid}\n`);
    } catch (error) {
      kill(child);
      await child.status;
      await stderr.catch(() => "");
      return {
        got: "failed",
        detail: `could not place the probe in ${place.cgroupDir}: ${
          error instanceof Error ? error.message : error
        }`,
      };
    }
    await writer.write(new TextEncoder().encode("go\n"));
    await writer.close().catch(() => {});
  } catch {
    // It ended already (killed from outside): its status says so.
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const status = await Promise.race([child.status, timedOut]);
    if (status === "timeout") {
      if (place.own) killCgroup(place.cgroupDir);
      kill(child);
      await child.status;
      await stderr.catch(() => "");
      return { got: "timeout", detail: `no answer within ${timeoutMs / 1000}s; killed` };
    }
    return classifyProbe(probe, status.signal ? 128 : status.code, await stderr.catch(() => ""));
  } finally {
    clearTimeout(timer);
  }
}

function kill(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGKILL");
  } catch {
    // Gone already.
  }
}

/** Kills every process of a cgroup (cgroup.kill, Linux 5.14 and later; else only the probe is killed). */
export function killCgroup(dir: string): void {
  try {
    Deno.writeTextFileSync(`${dir}/cgroup.kill`, "1");
  } catch {
    // Older kernel: the probe's own process is killed by pid.
  }
}
