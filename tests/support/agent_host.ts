/**
 * A host for agent tests: its own bpffs mount, state and config directories and test cgroup, the agent
 * spawned on them, and a policy scoped to the cgroup, so nothing outside it is ever denied. Everything is
 * detached and removed in `finally`.
 */
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { AgentRun, type Dirs } from "./agent_run.ts";
import { TestBpffs } from "./bpffs.ts";
import { TestCgroup } from "./cgroup.ts";

/** High ports outside the ephemeral range, different for each test process. */
export const PORT = 61000 + (Deno.pid % 300) * 3;
export const [TCP_PORT, UDP_PORT, BIND_PORT] = [PORT, PORT + 1, PORT + 2];

export type Host = Dirs & { dir: string; cgroup: TestCgroup; env: Record<string, string> };

export async function withHost(fn: (host: Host) => Promise<void>): Promise<void> {
  const bpffs = await TestBpffs.mount();
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-agent-" });
  const cgroup = TestCgroup.create();
  const dirs = { bpffs: bpffs.path, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
  Deno.mkdirSync(dirs.configDir, { mode: 0o700 }); // as aegisbpf makes it: a wider one is warned about
  // No test depends on the host's kernel command line.
  Deno.writeTextFileSync(`${dir}/cmdline`, "ro quiet\n");
  const env = {
    AEGISBPF_BPFFS: dirs.bpffs,
    AEGISBPF_STATE_DIR: dirs.stateDir,
    AEGISBPF_CONFIG_DIR: dirs.configDir,
    AEGISBPF_PROC_CMDLINE: `${dir}/cmdline`,
  };
  try {
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

export function spawn(host: Host, args: string[], env: Record<string, string> = {}): AgentRun {
  return AgentRun.spawn(host, args, { env: { ...host.env, ...env } });
}

export function policy(host: Host, body: string, options: { mode?: string; version?: number } = {}): string {
  return `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: agent-test, version: ${options.version ?? 1} }
spec:
  mode: ${options.mode ?? "enforce"}
  scope: { cgroups: ["${host.cgroup.relativePath}"] }
${body}`;
}

export const NET = `  network:
    egress:
      deny:
        - { id: tcp-lo2, cidr: 127.0.0.2/32, ports: [${TCP_PORT}], protocol: tcp }
        - { id: udp-lo3, cidr: 127.0.0.3/32, ports: [${UDP_PORT}], protocol: udp }
    bind: { deny: [{ id: bind-port, port: ${BIND_PORT}, protocol: tcp }] }
`;

/**
 * A secret file (rule secret-file) and a copy of true (rule tool-exec) in the host's directory, each denied,
 * beside NET's egress and bind rules, written to p.yaml; `secretTags` are the secret rule's tags.
 */
export function everyAreaPolicy(
  host: Host,
  secretTags: string[] = [],
): { secret: string; tool: string; file: string } {
  const secret = `${host.dir}/secret`;
  Deno.writeTextFileSync(secret, "s3cret\n");
  const tool = `${host.dir}/tool`;
  Deno.copyFileSync("/usr/bin/true", tool);
  Deno.chmodSync(tool, 0o755);
  const tags = secretTags.length > 0 ? `, tags: [${secretTags.join(", ")}]` : "";
  const file = writePolicy(
    host,
    "p.yaml",
    policy(
      host,
      `  files: { deny: [{ id: secret-file, path: ${secret}${tags} }] }\n` +
        `  exec: { deny: [{ id: tool-exec, path: ${tool} }] }\n${NET}`,
    ),
  );
  return { secret, tool, file };
}

export function writePolicy(host: Host, name: string, text: string): string {
  const path = `${host.dir}/${name}`;
  Deno.writeTextFileSync(path, text);
  return path;
}

/** A TCP connect from the test cgroup to the denied address: "EPERM" when denied, else anything else. */
export async function connect(host: Host): Promise<string> {
  const result = await host.cgroup.connect("127.0.0.2", TCP_PORT);
  return result === "EPERM" ? "EPERM" : "allowed";
}

/** Polls `check` until it returns `want`, for at most `ms`; returns the time it took. */
export async function within(ms: number, want: string, check: () => Promise<string>): Promise<number> {
  const start = performance.now();
  let last = "";
  while (performance.now() - start < ms) {
    last = await check();
    if (last === want) return performance.now() - start;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`Still ${last} after ${ms} ms (wanted ${want})`);
}
