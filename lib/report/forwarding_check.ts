/**
 * doctor's `forwarding` check: a host that forwards packets carries traffic no socket hook sees (a tun
 * device of an unprivileged user, a tunnel), which egress rules judge only with network.egress.forwarded.
 */
import { forwardLinkName, hasTcx } from "../kernel/links.ts";
import { readForwarding } from "../policy/facts.ts";
import { readApplied } from "../state/apply_state.ts";
import { pinnedLinks } from "../kernel/inspect.ts";
import type { Check } from "./host_checks.ts";

/** What the check reads: the forwarding sysctls, whether egress rules are applied, the pinned link names. */
export type ForwardingFacts = {
  forwarding: { ipv4: boolean; ipv6: boolean } | undefined;
  egressApplied: boolean;
  links: readonly string[];
  /**
   * Whether the kernel has tcx links (Linux 6.6+), which `forwarded: true` attaches as; without them it
   * attaches classic tc filters on a clsact qdisc instead.
   */
  tcx: boolean;
};

export function readForwardingFacts(paths: { bpffs: string; stateDir: string }): ForwardingFacts {
  return {
    forwarding: readForwarding(),
    egressApplied: readApplied(paths.stateDir)?.areas?.includes("egress") ?? false,
    links: pinnedLinks(paths.bpffs).filter((link) => link.attached).map((link) => link.name),
    tcx: hasTcx(Deno.osRelease()),
  };
}

/** The verdict: a warning when the host forwards and the applied egress rules leave forwarded packets alone. */
export function forwardingCheck(facts: ForwardingFacts): Check {
  const name = "forwarding";
  if (facts.forwarding === undefined) {
    return { name, status: "ok", detail: "/proc/sys/net/ipv4/ip_forward cannot be read" };
  }
  const on = [
    ...facts.forwarding.ipv4 ? ["net.ipv4.ip_forward"] : [],
    ...facts.forwarding.ipv6 ? ["net.ipv6.conf.all.forwarding"] : [],
  ];
  if (on.length === 0) return { name, status: "ok", detail: "this host does not forward packets" };
  const judged = facts.links.filter((link) => link.startsWith(forwardLinkName("")));
  if (judged.length > 0) {
    return {
      name,
      status: "ok",
      detail: `${on.join(", ")} = 1; forwarded packets judged on ${judged.length} interface(s)` +
        (facts.tcx ? " (tcx links)" : " (classic tc filters: this kernel has no tcx links, Linux 6.6+)"),
    };
  }
  if (!facts.egressApplied) {
    return { name, status: "ok", detail: `${on.join(", ")} = 1; no egress rules applied` };
  }
  return {
    name,
    status: "warn",
    detail:
      `${on.join(", ")} = 1 and the applied egress rules do not judge forwarded packets: a tun device ` +
      "or a tunnel carries traffic to denied destinations",
    remediation: "set network.egress.forwarded: true in the policy and apply it, or turn forwarding off" +
      (facts.tcx ? "" : " (this kernel has no tcx links, Linux 6.6+: it attaches classic tc filters)"),
  };
}
