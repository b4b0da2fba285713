/**
 * What the network suites (connect, ingress) share: the rule sets, namespaces of their own, and the peers
 * users would pick instead (nftables, iptables with an ipset), each given the same addresses.
 */
import { DataPlane, type DataPlaneOptions } from "../../lib/kernel/dataplane.ts";
import { parseCidr } from "../../lib/policy/cidr.ts";
import type { NetRule } from "../../lib/policy/plan.ts";
import { TestBpffs } from "../../tests/support/bpffs.ts";
import { TestCgroup } from "../../tests/support/cgroup.ts";
import { isLeftover, must, run, uniqueName } from "../../tests/support/privileged.ts";

const NETNS_PREFIX = "aegb";

/**
 * `count` distinct CIDRs in 10.0.0.0/8, none of which holds 127.0.0.1 or 198.18.0.0/15: /32 and /24 in
 * turn (`hostsOnly`: all /32), so that a trie and an interval set hold real prefixes.
 */
export function denyCidrs(count: number, options: { hostsOnly?: boolean } = {}): string[] {
  return Array.from({ length: count }, (_, i) => {
    const [a, b, c] = [10 + ((i >> 16) & 0x3f), (i >> 8) & 0xff, i & 0xff];
    return options.hostsOnly
      ? `${a}.${b}.${c}.1/32`
      : i % 2 === 0
      ? `${a}.${b}.${c}.0/32`
      : `${a}.${b}.${c}.0/24`;
  });
}

/** Deny rules (rule id 1, every protocol and port) for `cidrs`. */
export function denyRules(cidrs: readonly string[]): NetRule[] {
  return cidrs.map((cidr) => ({ ruleId: 1, action: "deny" as const, ...parseCidr(cidr) }));
}

/** A network namespace of the suite's own with its loopback up; `remove()` deletes it. */
export class Netns {
  readonly name: string;

  private constructor(name: string) {
    this.name = name;
  }

  static async create(): Promise<Netns> {
    await removeLeftoverNetns();
    const ns = new Netns(uniqueName(NETNS_PREFIX));
    await must("ip", ["netns", "add", ns.name]);
    try {
      await must("ip", ["-n", ns.name, "link", "set", "lo", "up"]);
    } catch (error) {
      await ns.remove();
      throw error;
    }
    return ns;
  }

  /** `command` run inside the namespace (argv form, for a shell line or exec). */
  exec(command: string[]): string[] {
    return ["ip", "netns", "exec", this.name, ...command];
  }

  async remove(): Promise<void> {
    await run("ip", ["netns", "delete", this.name]);
  }
}

/** Namespaces of interrupted runs of a suite (their process is gone). */
export async function removeLeftoverNetns(): Promise<void> {
  const list = await run("ip", ["netns", "list"]);
  for (const line of list.stdout.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    if (isLeftover(name, NETNS_PREFIX)) await run("ip", ["netns", "delete", name]);
  }
}

/** Runs `command` with `input` on its standard input; throws with its stderr when it fails. */
export async function mustWithInput(command: string[], input: string): Promise<void> {
  const child = new Deno.Command(command[0]!, {
    args: command.slice(1),
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const { success, stderr } = await child.output();
  if (!success) {
    throw new Error(`${command.join(" ")} failed: ${new TextDecoder().decode(stderr).trim().slice(0, 500)}`);
  }
}

/**
 * An nftables table in `ns` that drops what its interval set `deny` matches: `hook` "output" (an `inet`
 * table matching destinations) or "ingress" on `device` (a `netdev` table matching sources).
 */
export async function loadNftables(
  ns: string,
  cidrs: readonly string[],
  hook: { output: true } | { ingress: string },
): Promise<void> {
  const match = "output" in hook ? "ip daddr" : "ip saddr";
  const table = "output" in hook ? "table inet aegb" : "table netdev aegb";
  const chain = "output" in hook
    ? "type filter hook output priority 0; policy accept;"
    : `type filter hook ingress device "${hook.ingress}" priority 0; policy accept;`;
  const script = `${table} {
  set deny {
    type ipv4_addr; flags interval;
    elements = { ${cidrs.join(", ")} }
  }
  chain filter {
    ${chain}
    ${match} @deny drop
  }
}
`;
  await mustWithInput(["ip", "netns", "exec", ns, "nft", "-f", "-"], script);
}

/**
 * An ipset (hash:net) holding `cidrs` in `ns` and one iptables rule dropping what it matches: in the
 * filter table's OUTPUT by destination, or the raw table's PREROUTING by source.
 */
export async function loadIptablesIpset(
  ns: string,
  cidrs: readonly string[],
  where: "output" | "raw-prerouting",
): Promise<void> {
  const set = "aegb_deny";
  const lines = [
    `create ${set} hash:net family inet hashsize ${Math.max(1024, cidrs.length)} maxelem ${
      Math.max(65536, cidrs.length * 2)
    }`,
    ...cidrs.map((cidr) => `add ${set} ${cidr}`),
  ];
  await mustWithInput(["ip", "netns", "exec", ns, "ipset", "restore"], lines.join("\n") + "\n");
  const rule = where === "output"
    ? ["-t", "filter", "-A", "OUTPUT", "-m", "set", "--match-set", set, "dst", "-j", "DROP"]
    : ["-t", "raw", "-A", "PREROUTING", "-m", "set", "--match-set", set, "src", "-j", "DROP"];
  await must("ip", ["netns", "exec", ns, "iptables", ...rule]);
}

/** The version line of a peer's tool, for the method. */
export async function version(command: string[]): Promise<string> {
  const out = await run(command[0]!, command.slice(1));
  return (out.stdout || out.stderr).trim().split("\n")[0] ?? "";
}

/** Undo steps a suite runs in reverse order in its `finally`. */
export type Cleanup = (() => Promise<void> | void)[];

/**
 * A DataPlane on a test cgroup and a private bpffs of its own; closing, detaching, unmounting and removing
 * them are pushed onto `cleanup`.
 */
export async function openTestPlane(
  options: Omit<DataPlaneOptions, "bpffs" | "cgroupPath">,
  cleanup: Cleanup,
): Promise<{ plane: DataPlane; cgroup: TestCgroup }> {
  const cgroup = TestCgroup.create();
  cleanup.push(() => cgroup.remove());
  const bpffs = await TestBpffs.mount();
  cleanup.push(() => bpffs.unmount());
  const plane = DataPlane.open({ ...options, bpffs: bpffs.path, cgroupPath: cgroup.path });
  cleanup.push(() => {
    plane.close();
    DataPlane.detach(bpffs.path);
  });
  return { plane, cgroup };
}
