/**
 * Policy format v1 (SPEC section 3) as a zod schema. Objects are strict: an unknown key is an error, so a
 * typo never silently drops a rule. Messages read "what is wrong; what would be valid"; `parse.ts` adds
 * the key path and FILE:LINE:COL.
 */
import { z } from "zod";
import { CidrError, networkOf, parseCidr } from "./cidr.ts";

export const API_VERSION = "aegisbpf.io/v1";

const NAME_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$/;
const RULE_ID_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/;
/** Linux IFNAMSIZ is 16 with the terminating NUL. */
const INTERFACE_PATTERN = /^[^\s/:]{1,15}$/;
const MAX_ID = 4294967294;

const ruleId = z.string().regex(RULE_ID_PATTERN, {
  error: "rule ids are 1-64 letters, digits, '.', '_' or '-', starting and ending with a letter or digit",
}).refine((id) => id !== "default", {
  error: `"default" is reserved for the ingress default; choose another id`,
});

const absolutePath = (what: string) =>
  z.string().refine(isAbsoluteClean, {
    error: `${what} must be an absolute path without "." or ".." components, e.g. /etc/shadow`,
  });

function isAbsoluteClean(path: string): boolean {
  if (!path.startsWith("/") || path.includes("\0") || path.length > 4096) return false;
  return path.split("/").every((part) => part !== "." && part !== "..");
}

const port = z.int({ error: "a port is an integer 1-65535" }).min(1, { error: "valid ports are 1-65535" })
  .max(65535, { error: "valid ports are 1-65535" });

const portList = (min: number) =>
  z.array(port, { error: "expected a list of ports, e.g. [22, 443]" })
    .min(min, { error: "list at least one port" })
    .superRefine((ports, ctx) => {
      const seen = new Set<number>();
      ports.forEach((value, index) => {
        if (seen.has(value)) {
          ctx.addIssue({
            code: "custom",
            path: [index],
            input: value,
            message: `port ${value} is listed twice`,
          });
        }
        seen.add(value);
      });
    });

const protocol = z.enum(["tcp", "udp"]);

const cidr = z.string({ error: 'a CIDR is a string, e.g. 10.0.0.0/8 or "2001:db8::/32"' }).superRefine(
  (text, ctx) => {
    const problem = cidrProblem(text);
    if (problem) ctx.addIssue({ code: "custom", input: text, message: problem });
  },
);

/** Why `text` is not a network in CIDR notation, or undefined when it is one. */
function cidrProblem(text: string): string | undefined {
  try {
    const parsed = parseCidr(text);
    const network = networkOf(parsed);
    if (network.addr.every((byte, i) => byte === parsed.addr[i])) return undefined;
    const address = text.split("/")[0];
    return `${text} has host bits set; write the network ${
      formatNetwork(network.addr)
    }/${parsed.prefixLength}` +
      ` or the host ${address}/${parsed.addr.length * 8}`;
  } catch (error) {
    if (!(error instanceof CidrError)) throw error;
    return `${error.message}; valid is an IPv4 or IPv6 address with an optional /prefix, e.g. 10.0.0.0/8`;
  }
}

function formatNetwork(addr: Uint8Array): string {
  if (addr.length === 4) return [...addr].join(".");
  const groups = Array.from({ length: 8 }, (_, i) => ((addr[i * 2]! << 8) | addr[i * 2 + 1]!).toString(16));
  return groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
}

/**
 * A NAT64 prefix (RFC 6052) whose addresses stand for the IPv4 address in their last 32 bits: only /96
 * (the well-known 64:ff9b::/96 is always on), so that the IPv4 address sits where the hooks read it.
 */
const nat64Prefix = z.string({ error: 'a NAT64 prefix is a string, e.g. "64:ff9b::/96"' }).superRefine(
  (text, ctx) => {
    const problem = cidrProblem(text);
    if (problem) {
      ctx.addIssue({ code: "custom", input: text, message: problem });
      return;
    }
    const { family, prefixLength } = parseCidr(text);
    if (family !== 6 || prefixLength !== 96) {
      ctx.addIssue({
        code: "custom",
        input: text,
        message: `${text} is not an IPv6 /96; NAT64 prefixes here are /96, e.g. "2001:db8:64::/96"`,
      });
    }
  },
);

const fileRule = z.strictObject({
  id: ruleId.optional(),
  path: absolutePath("path"),
  recursive: z.boolean().optional(),
  optional: z.boolean().optional(),
});

const netRule = z.strictObject({
  id: ruleId.optional(),
  cidr: cidr.optional(),
  port: port.optional(),
  ports: portList(1).optional(),
  protocol: protocol.optional(),
}).superRefine((rule, ctx) => {
  if (rule.port !== undefined && rule.ports !== undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["ports"],
      input: rule.ports,
      message: "use either port or ports, not both",
    });
  } else if (rule.cidr === undefined && rule.port === undefined && rule.ports === undefined) {
    ctx.addIssue({
      code: "custom",
      input: rule,
      message: "a rule matches nothing without a cidr or a port; add cidr, port or ports",
    });
  }
});

const portRule = z.strictObject({
  id: ruleId.optional(),
  port: port.optional(),
  ports: portList(1).optional(),
  protocol: protocol.optional(),
}).superRefine((rule, ctx) => {
  if ((rule.port === undefined) === (rule.ports === undefined)) {
    ctx.addIssue({ code: "custom", input: rule, message: "name the ports with either port or ports" });
  }
});

const userId = z.int({ error: `ids are integers 0-${MAX_ID}` }).min(0, { error: `valid ids are 0-${MAX_ID}` })
  .max(MAX_ID, { error: `valid ids are 0-${MAX_ID}` });

const userRule = z.strictObject({
  id: ruleId.optional(),
  uid: userId.optional(),
  gid: userId.optional(),
  allowPorts: portList(0).optional(),
  denyPorts: portList(1).optional(),
}).superRefine((rule, ctx) => {
  if ((rule.uid === undefined) === (rule.gid === undefined)) {
    ctx.addIssue({ code: "custom", input: rule, message: "a users entry names exactly one of uid or gid" });
  }
  if ((rule.allowPorts === undefined) === (rule.denyPorts === undefined)) {
    ctx.addIssue({
      code: "custom",
      input: rule,
      message: "a users entry has exactly one of allowPorts or denyPorts",
    });
  }
});

const list = <T extends z.ZodType>(item: T) => z.array(item, { error: "expected a list" });

/** A list of names in which each may appear once. */
const names = <T extends z.ZodType<string>>(item: T) =>
  list(item).superRefine((values, ctx) => {
    values.forEach((value, index) => {
      if (values.indexOf(value) !== index) {
        ctx.addIssue({ code: "custom", path: [index], input: value, message: `${value} is listed twice` });
      }
    });
  });

const ingress = z.strictObject({
  interfaces: names(
    z.string().regex(INTERFACE_PATTERN, {
      error: "an interface name is 1-15 characters without spaces, / or :",
    }),
  ).min(1, { error: "list at least one interface, e.g. [eth0]" }),
  default: z.enum(["pass", "drop"]).default("pass"),
  failsafe: portRule.optional(),
  allow: list(netRule).optional(),
  deny: list(netRule).optional(),
});

const spec = z.strictObject({
  mode: z.enum(["audit", "enforce"]).default("audit"),
  scope: z.strictObject({
    cgroups: names(absolutePath("a cgroup")).optional(),
    exempt: names(absolutePath("a cgroup")).optional(),
  }).optional(),
  files: z.strictObject({ deny: list(fileRule).optional() }).optional(),
  exec: z.strictObject({ denyMemfd: z.boolean().optional(), deny: list(fileRule).optional() }).optional(),
  network: z.strictObject({
    egress: z.strictObject({
      denyPacketSockets: z.boolean().optional(),
      nat64Prefixes: names(nat64Prefix).optional(),
      deny: list(netRule).optional(),
      allow: list(netRule).optional(),
      users: list(userRule).optional(),
    }).optional(),
    bind: z.strictObject({ deny: list(portRule).optional() }).optional(),
    ingress: ingress.optional(),
  }).optional(),
});

const metadata = z.strictObject({
  name: z.string().regex(NAME_PATTERN, {
    error: "a name is 1-128 letters, digits, '.', '_' or '-', starting and ending with a letter or digit",
  }),
  version: z.int({ error: "a version is an integer >= 1" }).min(1, { error: "a version is an integer >= 1" }),
  notAfter: z.iso.datetime({
    offset: true,
    error: "notAfter is an RFC 3339 time with a zone, e.g. 2027-01-01T00:00:00Z",
  }).optional(),
});

const policyObject = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal("Policy"),
  metadata,
  spec,
});

export type Policy = z.output<typeof policyObject>;
export type FileRule = z.output<typeof fileRule>;
export type NetRuleSpec = z.output<typeof netRule>;
export type PortRuleSpec = z.output<typeof portRule>;
export type UserRuleSpec = z.output<typeof userRule>;
export type PolicyPath = (string | number)[];

type RuleOf = {
  "files.deny": FileRule;
  "exec.deny": FileRule;
  "network.egress.deny": NetRuleSpec;
  "network.egress.allow": NetRuleSpec;
  "network.egress.users": UserRuleSpec;
  "network.bind.deny": PortRuleSpec;
  "network.ingress.failsafe": PortRuleSpec;
  "network.ingress.allow": NetRuleSpec;
  "network.ingress.deny": NetRuleSpec;
};
export type RuleList = keyof RuleOf;

/** Every rule of a policy with its effective id (written, or generated from where it stands) and path. */
export type PolicyRule = {
  [L in RuleList]: { list: L; rule: RuleOf[L]; id: string; explicitId: boolean; path: PolicyPath };
}[RuleList];

type Lists = { [L in RuleList]: (spec: Policy["spec"]) => RuleOf[L][] | undefined };

/** The rule lists in the order rule numbers are given: stable, whatever order the file names them in. */
const LISTS: Lists = {
  "files.deny": (spec) => spec.files?.deny,
  "exec.deny": (spec) => spec.exec?.deny,
  "network.egress.deny": (spec) => spec.network?.egress?.deny,
  "network.egress.allow": (spec) => spec.network?.egress?.allow,
  "network.egress.users": (spec) => spec.network?.egress?.users,
  "network.bind.deny": (spec) => spec.network?.bind?.deny,
  "network.ingress.failsafe": (spec) => {
    const failsafe = spec.network?.ingress?.failsafe;
    return failsafe && [failsafe];
  },
  "network.ingress.allow": (spec) => spec.network?.ingress?.allow,
  "network.ingress.deny": (spec) => spec.network?.ingress?.deny,
};

/** Every rule in rule-number order; a rule without an id is named after its place, e.g. `files.deny[0]`. */
export function policyRules(policy: Pick<Policy, "spec">): PolicyRule[] {
  return (Object.keys(LISTS) as RuleList[]).flatMap((list) => {
    const rules = LISTS[list](policy.spec) ?? [];
    const single = list === "network.ingress.failsafe";
    return rules.map((rule, index) => {
      const path: PolicyPath = ["spec", ...list.split("."), ...(single ? [] : [index])];
      const generated = single ? list : `${list}[${index}]`;
      return { list, rule, id: rule.id ?? generated, explicitId: rule.id !== undefined, path } as PolicyRule;
    });
  });
}

/** The policy schema, with the checks that span rules: unique rule ids and one users entry per uid or gid. */
export const policySchema = policyObject.superRefine((policy, ctx) => {
  const seen = new Map<string, PolicyPath>();
  const users = new Set<string>();
  for (const entry of policyRules(policy)) {
    const first = seen.get(entry.id);
    if (first) {
      ctx.addIssue({
        code: "custom",
        path: [...entry.path, "id"],
        input: entry.id,
        message: `rule id "${entry.id}" is already used at ${pathText(first)}; rule ids must be unique`,
      });
    }
    seen.set(entry.id, first ?? entry.path);
    if (entry.list !== "network.egress.users") continue;
    const who = entry.rule.uid !== undefined ? `uid ${entry.rule.uid}` : `gid ${entry.rule.gid}`;
    if (users.has(who)) {
      ctx.addIssue({
        code: "custom",
        path: entry.path,
        input: entry.rule,
        message: `${who} has a users entry already; merge the two entries into one`,
      });
    }
    users.add(who);
  }
});

/** `spec.files.deny[0].path` for a path of keys and indexes. */
export function pathText(path: readonly PropertyKey[]): string {
  return path.map((part, i) => typeof part === "number" ? `[${part}]` : `${i ? "." : ""}${String(part)}`)
    .join("") || "the document";
}
