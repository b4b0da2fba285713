/**
 * A host for one agent test: its own bpffs mount, state and config directories, test cgroup and kernel
 * command line file, all removed (and everything detached) in `finally`; and policies scoped to that cgroup,
 * so nothing outside it is ever denied.
 */
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import type { Dirs } from "./agent_run.ts";
import { TestBpffs } from "./bpffs.ts";
import { TestCgroup } from "./cgroup.ts";

export type Host = Dirs & { dir: string; cgroup: TestCgroup; env: Record<string, string> };

/** Runs `fn` with a fresh host; `stateDir` is made by the agent unless `prepare` makes it first. */
export async function withHost(
  fn: (host: Host) => Promise<void>,
  prepare: (dirs: Dirs & { dir: string }) => Promise<void> | void = () => {},
): Promise<void> {
  const bpffs = await TestBpffs.mount();
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-agent-" });
  const cgroup = TestCgroup.create();
  const dirs = { bpffs: bpffs.path, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
  Deno.mkdirSync(dirs.configDir);
  // No test depends on the host's kernel command line.
  Deno.writeTextFileSync(`${dir}/cmdline`, "ro quiet\n");
  const env = {
    AEGISBPF_BPFFS: dirs.bpffs,
    AEGISBPF_STATE_DIR: dirs.stateDir,
    AEGISBPF_CONFIG_DIR: dirs.configDir,
    AEGISBPF_PROC_CMDLINE: `${dir}/cmdline`,
  };
  try {
    await prepare({ ...dirs, dir });
    await fn({ ...dirs, dir, cgroup, env });
  } finally {
    try {
      DataPlane.detach(bpffs.path);
    } finally {
      cgroup.remove();
      await bpffs.unmount();
      Deno.removeSync(dir, { recursive: true });
    }
  }
}

/** A policy named agent-test scoped to the host's cgroup, with `body` under `spec`. */
export function scopedPolicy(
  host: Host,
  body: string,
  options: { mode?: string; version?: number } = {},
): string {
  return `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: agent-test, version: ${options.version ?? 1} }
spec:
  mode: ${options.mode ?? "enforce"}
  scope: { cgroups: ["${host.cgroup.relativePath}"] }
${body}`;
}

/** Writes `text` to `<host.dir>/<name>` and returns the path. */
export function writePolicy(host: Host, name: string, text: string): string {
  const path = `${host.dir}/${name}`;
  Deno.writeTextFileSync(path, text);
  return path;
}
