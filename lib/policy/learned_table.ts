/**
 * A learned-address table as text, for `policy simulate` and `explain` (`--learned FILE`): one address and
 * the name it was learned for per line, as /etc/hosts writes them (`192.0.2.10 api.example.com`); `#` starts
 * a comment. What the kernel's table held is what decides rules by name (decide.ts).
 */
import { InputError } from "../errors.ts";
import { cidrProblem } from "./schema.ts";
import type { LearnedAddress } from "./decide.ts";
import { hostProblem } from "./host_name.ts";

/** The table `text` holds; a malformed line is an InputError naming `source`:LINE. */
export function parseLearnedTable(text: string, source: string): LearnedAddress[] {
  const table: LearnedAddress[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    const where = `${source}:${index + 1}`;
    const [addr, host, ...rest] = line.split(/\s+/) as [string, string | undefined, ...string[]];
    if (host === undefined || rest.length > 0) {
      throw new InputError(`${where}: expected ADDRESS NAME, e.g. 192.0.2.10 api.example.com`);
    }
    if (addr.includes("/") || cidrProblem(addr) !== undefined) {
      throw new InputError(`${where}: ${addr} is not an IPv4 or IPv6 address`);
    }
    const problem = hostProblem(host);
    if (problem !== undefined || host.startsWith("*")) {
      throw new InputError(`${where}: ${host} is not a host name${problem ? `: ${problem}` : ""}`);
    }
    table.push({ addr, host });
  });
  return table;
}

/**
 * The table an event line itself implies: an event a rule by an exact name decided (`hostName`) had its
 * destination learned for that name.
 */
export function learnedFromEvent(hostName: string | undefined, daddr: string | undefined): LearnedAddress[] {
  return hostName !== undefined && daddr !== undefined && !hostName.startsWith("*.")
    ? [{ addr: daddr, host: hostName }]
    : [];
}
