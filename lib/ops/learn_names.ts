/**
 * The exact names of a plan's rules by name, resolved at apply (and by the agent per TTL), so that an
 * address a program learned before the apply is decided too. A name that does not resolve is a warning:
 * its rules decide nothing until it does (under an allowlist, its addresses stay refused).
 */
import type { Answer } from "../kernel/learned.ts";
import { parseResolvConf } from "../policy/facts.ts";
import type { RuleSetPlan } from "../policy/plan.ts";
import { type NameServer, resolveAddresses } from "../names/resolve.ts";

/** The exact names the plan's rules by name cover (wildcards are learned from answers only). */
export function exactNames(plan: RuleSetPlan): string[] {
  return [
    ...new Set((plan.egressHosts ?? []).map((rule) => rule.host).filter((host) => !host.startsWith("*."))),
  ];
}

/** The resolvers of /etc/resolv.conf. */
export function systemNameServers(): NameServer[] {
  try {
    return parseResolvConf(Deno.readTextFileSync("/etc/resolv.conf")).map((addr) => ({ addr }));
  } catch {
    return [];
  }
}

/** Resolves every exact name of `plan`; a name that fails is reported through `warn` and skipped. */
export async function resolvePlanNames(
  plan: RuleSetPlan,
  options: { servers?: readonly NameServer[]; warn: (message: string) => void },
): Promise<Answer[]> {
  const names = exactNames(plan);
  if (names.length === 0) return [];
  const servers = options.servers ?? systemNameServers();
  const results = await Promise.all(names.map(async (name) => {
    try {
      const addresses = await resolveAddresses(name, { servers });
      if (addresses.length === 0) {
        options.warn(`${name} has no address (A or AAAA) now: its rules decide nothing`);
      }
      return addresses.map(({ addr, ttl }) => ({ name, addr, ttl }));
    } catch (error) {
      options.warn(
        `${error instanceof Error ? error.message : error}: its rules decide nothing until it resolves`,
      );
      return [];
    }
  }));
  return results.flat();
}
