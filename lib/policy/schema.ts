/**
 * Policy format v1 (SPEC section 3) as a zod schema. Objects are strict: an unknown key is an error, so a
 * typo never silently drops a rule. Messages read "what is wrong; what would be valid"; `parse.ts` adds
 * the key path and FILE:LINE:COL.
 */
import { z } from "zod";
import { CidrError, hasHostBits, isPlainIpv4Network, networkOf, parseCidr } from "./cidr.ts";
import { hostProblem } from "./host_name.ts";
import { checksSchema } from "./checks.ts";
import { DAYS, isTimeZone, secondsOfDay, testSecondsAllowed } from "./window_spec.ts";

export const API_VERSION = "aegisbpf.io/v1";

const NAME_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$/;
export const RULE_ID_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/;
/** Linux IFNAMSIZ is 16 with the terminating NUL. */
const INTERFACE_PATTERN = /^[^\s/:]{1,15}$/;
const MAX_ID = 4294967294;

const ruleId = z.string().regex(RULE_ID_PATTERN, {
  error: "rule ids are 1-64 letters, digits, '.', '_' or '-', starting and ending with a letter or digit",
}).refine((id) => id !== "default", {
  error: `"default" is reserved for the ingress default; choose another id`,
});

/** A rule tag: a short label such as a MITRE ATT&CK technique (T1003.008) or a team's own word. */
export const TAG_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,30}[A-Za-z0-9])?$/;
/** The most tags one rule carries: events and metrics labels repeat them. */
export const MAX_TAGS = 8;

const tags = z.array(
  z.string({ error: "a tag is a string, e.g. T1003.008" }).regex(TAG_PATTERN, {
    error:
      "a tag is 1-32 letters, digits, '.', '_', ':' or '-', starting and ending with a letter or digit, " +
      "e.g. T1003.008",
  }),
  { error: "tags is a list of short strings, e.g. [T1003.008]" },
).max(MAX_TAGS, { error: `a rule carries at most ${MAX_TAGS} tags` }).superRefine((values, ctx) => {
  values.forEach((value, index) => {
    if (values.indexOf(value) !== index) {
      ctx.addIssue({ code: "custom", path: [index], input: value, message: `tag ${value} is listed twice` });
    }
  });
});

/**
 * `when:`: the rule is in force only inside this window of the week (lib/policy/windows.ts). Seconds
 * ("HH:MM:SS") only where the test switch allows them.
 */
const ruleWindow = z.strictObject({
  days: z.array(z.enum(DAYS, { error: `a day is one of ${DAYS.join(", ")}` }), {
    error: "days is a list of days, e.g. [mon, tue, wed, thu, fri]",
  }).min(1, { error: "list at least one day, or leave days out for every day" }).optional(),
  from: z.string({ error: 'from is a time of day, e.g. "08:00"' }),
  to: z.string({ error: 'to is a time of day, e.g. "18:00"' }),
  tz: z.string({ error: "tz is a time zone, e.g. Europe/Berlin" }).optional(),
}).superRefine((window, ctx) => {
  const seconds = testSecondsAllowed();
  const times = { from: secondsOfDay(window.from, seconds), to: secondsOfDay(window.to, seconds) };
  for (const key of ["from", "to"] as const) {
    if (times[key] === undefined) {
      ctx.addIssue({
        code: "custom",
        path: [key],
        input: window[key],
        message: `${key} must be a time of day HH:MM (00:00 to 23:59), e.g. "08:00", not ${
          JSON.stringify(window[key])
        }`,
      });
    }
  }
  if (times.from !== undefined && times.from === times.to) {
    ctx.addIssue({
      code: "custom",
      path: ["to"],
      input: window.to,
      message:
        "from and to are the same time: the window would be empty; for a rule always in force, drop when",
    });
  }
  if (window.tz !== undefined && !isTimeZone(window.tz)) {
    ctx.addIssue({
      code: "custom",
      path: ["tz"],
      input: window.tz,
      message: `unknown time zone ${
        JSON.stringify(window.tz)
      }; name one as Area/City, e.g. Europe/Berlin, or UTC`,
    });
  }
});

const absolutePath = (what: string, example = "/etc/shadow") =>
  z.string().refine(isAbsoluteClean, {
    error: `${what} must be an absolute path without "." or ".." components, e.g. ${example}`,
  });

export function isAbsoluteClean(path: string): boolean {
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
export function cidrProblem(text: string): string | undefined {
  if (isPlainIpv4Network(text)) return undefined;
  try {
    const parsed = parseCidr(text);
    if (!hasHostBits(parsed)) return undefined;
    const network = networkOf(parsed);
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

/** A host name or a wildcard over a domain's names (`host_name.ts`). */
const host = z.string({ error: 'a host is a string, e.g. api.example.com or "*.example.com"' }).superRefine(
  (text, ctx) => {
    const problem = hostProblem(text);
    if (problem) ctx.addIssue({ code: "custom", input: text, message: problem });
  },
);

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

/** The largest `maxFiles` taken: a walk that long takes minutes (the default is in lib/kernel/tree.ts). */
export const MAX_FILES_LIMIT = 16_000_000;

const fileRule = z.strictObject({
  id: ruleId.optional(),
  tags: tags.optional(),
  when: ruleWindow.optional(),
  path: absolutePath("path"),
  recursive: z.boolean().optional(),
  optional: z.boolean().optional(),
  maxFiles: z.int({ error: "maxFiles is an integer, e.g. 1000000" }).min(1, {
    error: "maxFiles is at least 1",
  })
    .max(MAX_FILES_LIMIT, { error: `maxFiles is at most ${MAX_FILES_LIMIT}` }).optional(),
}).superRefine((rule, ctx) => {
  if (rule.maxFiles !== undefined && rule.recursive !== true) {
    ctx.addIssue({
      code: "custom",
      path: ["maxFiles"],
      input: rule.maxFiles,
      message: "maxFiles bounds a recursive rule's walk; set recursive: true or remove it",
    });
  }
});

/** A sha256 as `sha256sum` prints it: 64 hex digits. */
export const SHA256_PATTERN = /^[0-9a-fA-F]{64}$/;

/** The package databases a `trust` entry may name: dpkg's (Debian, Ubuntu). */
export const TRUST_SOURCES = ["dpkg"] as const;
export type TrustSource = typeof TRUST_SOURCES[number];

/** The keys a `{ trust }` entry may carry besides it. */
const TRUST_KEYS = new Set(["trust", "id"]);

/**
 * An exec.allow entry: a file or directory (`recursive`) whose inodes may run, or one file with the sha256
 * its content must have at apply (and must keep: the kernel refuses it once it changes), or `trust: dpkg`,
 * every file of the installed packages whose content matches dpkg's checksum at apply.
 */
const execAllowRule = z.strictObject({
  trust: z.enum(TRUST_SOURCES, {
    error: "trust names a package database: dpkg (the only one aegisbpf reads)",
  }).optional(),
  id: ruleId.optional(),
  tags: tags.optional(),
  when: ruleWindow.optional(),
  path: absolutePath("path").optional(),
  recursive: z.boolean().optional(),
  optional: z.boolean().optional(),
  maxFiles: fileRule.shape.maxFiles,
  sha256: z.string({ error: "a sha256 is 64 hex digits, as sha256sum prints it" }).regex(SHA256_PATTERN, {
    error: "a sha256 is 64 hex digits, as sha256sum prints it",
  }).optional(),
}).superRefine((rule, ctx) => {
  if (rule.trust !== undefined) {
    for (const key of Object.keys(rule)) {
      if (TRUST_KEYS.has(key)) continue;
      ctx.addIssue({
        code: "custom",
        path: [key],
        input: rule[key as keyof typeof rule],
        message: `a trust entry takes only id; ${key} belongs in an entry of its own`,
      });
    }
    return;
  }
  if (rule.path === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["path"],
      input: undefined,
      message: "path is required: a file, a directory with recursive: true, or trust: dpkg instead",
    });
  }
  if (rule.maxFiles !== undefined && rule.recursive !== true) {
    ctx.addIssue({
      code: "custom",
      path: ["maxFiles"],
      input: rule.maxFiles,
      message: "maxFiles bounds a recursive rule's walk; set recursive: true or remove it",
    });
  }
  if (rule.sha256 !== undefined && rule.recursive === true) {
    ctx.addIssue({
      code: "custom",
      path: ["sha256"],
      input: rule.sha256,
      message: "a sha256 entry names one file; remove recursive, or list the directory without sha256",
    });
  }
});

/**
 * A files.protect entry: the file (or directory, with every file and directory below it when recursive)
 * may be read and run but not changed. No maxFiles: the walk keeps the default cap.
 */
const protectRule = z.strictObject({
  id: ruleId.optional(),
  tags: tags.optional(),
  when: ruleWindow.optional(),
  path: absolutePath("path"),
  recursive: z.boolean().optional(),
  optional: z.boolean().optional(),
});

/**
 * A files.writers entry: a program (by inode, resolved at apply) that may change protected files, and with
 * `children: true` every process it starts; `optional`, an exe that may be missing on this host.
 */
const writerRule = z.strictObject({
  id: ruleId.optional(),
  tags: tags.optional(),
  when: ruleWindow.optional(),
  exe: absolutePath("exe", "/usr/bin/curl"),
  children: z.boolean({ error: "children is true or false" }).optional(),
  optional: z.boolean({ error: "optional is true or false" }).optional(),
});

const netFields = {
  id: ruleId.optional(),
  tags: tags.optional(),
  when: ruleWindow.optional(),
  cidr: cidr.optional(),
  port: port.optional(),
  ports: portList(1).optional(),
  protocol: protocol.optional(),
};

/**
 * The subject of an egress, users or bind entry: `exe`, the program (by inode, resolved at apply),
 * `children`, also every process it starts, `optional`, an exe that may be missing on this host.
 */
const subjectFields = {
  exe: absolutePath("exe", "/usr/bin/curl").optional(),
  children: z.boolean({ error: "children is true or false" }).optional(),
  optional: z.boolean({ error: "optional is true or false" }).optional(),
};

type SubjectKeys = {
  exe?: string | undefined;
  children?: boolean | undefined;
  optional?: boolean | undefined;
};

function checkSubject(rule: SubjectKeys, ctx: z.RefinementCtx): void {
  if (rule.exe !== undefined) return;
  for (const key of ["children", "optional"] as const) {
    if (rule[key] !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: [key],
        input: rule[key],
        message: `${key} applies to an entry that names a program; add exe: PATH or remove ${key}`,
      });
    }
  }
}

function checkNetRule(
  rule: { port?: number | undefined; ports?: number[] | undefined; cidr?: string | undefined },
  ctx: z.RefinementCtx,
): void {
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
}

const netRule = z.strictObject(netFields).superRefine(checkNetRule);

/**
 * An egress allow or deny entry: a network rule that may name the program it applies to, and its
 * destination by host name instead of cidr.
 */
const egressRule = z.strictObject({ ...netFields, host: host.optional(), ...subjectFields }).superRefine(
  (rule, ctx) => {
    checkEgressTarget(rule, ctx);
    checkSubject(rule, ctx);
  },
);

/** checkNetRule, where `host` names the destination as `cidr` does (never both). */
function checkEgressTarget(rule: EgressKeys, ctx: z.RefinementCtx): void {
  if (rule.host === undefined) return checkNetRule(rule, ctx);
  if (rule.cidr !== undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["host"],
      input: rule.host,
      message: "use either host or cidr, not both: a rule names its destination one way",
    });
  } else if (rule.port !== undefined && rule.ports !== undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["ports"],
      input: rule.ports,
      message: "use either port or ports, not both",
    });
  }
}

type EgressKeys = {
  exe?: string | undefined;
  host?: string | undefined;
  cidr?: string | undefined;
  port?: number | undefined;
  ports?: number[] | undefined;
};

const portFields = {
  id: ruleId.optional(),
  tags: tags.optional(),
  when: ruleWindow.optional(),
  port: port.optional(),
  ports: portList(1).optional(),
  protocol: protocol.optional(),
};

function checkPortRule(
  rule: { port?: number | undefined; ports?: number[] | undefined },
  ctx: z.RefinementCtx,
) {
  if ((rule.port === undefined) === (rule.ports === undefined)) {
    ctx.addIssue({ code: "custom", input: rule, message: "name the ports with either port or ports" });
  }
}

const portRule = z.strictObject(portFields).superRefine(checkPortRule);
const { when: _when, ...portFieldsWithoutWindow } = portFields;

/** A bind deny entry: ports, and the program it applies to when it names one. */
const bindRule = z.strictObject({ ...portFields, ...subjectFields }).superRefine((rule, ctx) => {
  checkPortRule(rule, ctx);
  checkSubject(rule, ctx);
});

const userId = z.int({ error: `ids are integers 0-${MAX_ID}` }).min(0, { error: `valid ids are 0-${MAX_ID}` })
  .max(MAX_ID, { error: `valid ids are 0-${MAX_ID}` });

const userRule = z.strictObject({
  id: ruleId.optional(),
  tags: tags.optional(),
  when: ruleWindow.optional(),
  uid: userId.optional(),
  gid: userId.optional(),
  allowPorts: portList(0).optional(),
  denyPorts: portList(1).optional(),
  ...subjectFields,
}).superRefine((rule, ctx) => {
  checkSubject(rule, ctx);
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
  // Always in force: a failsafe that a window could lift would be no failsafe.
  failsafe: z.strictObject(portFieldsWithoutWindow).superRefine(checkPortRule).optional(),
  allow: list(netRule).optional(),
  deny: list(netRule).optional(),
});

const spec = z.strictObject({
  mode: z.enum(["audit", "enforce"]).default("audit"),
  scope: z.strictObject({
    cgroups: names(absolutePath("a cgroup", "/system.slice/nginx.service")).optional(),
    exempt: names(absolutePath("a cgroup", "/system.slice/nginx.service")).optional(),
  }).optional(),
  files: z.strictObject({
    deny: list(fileRule).optional(),
    protect: list(protectRule).optional(),
    /** Programs that may change protected files (files.protect), and rename a new file over an allowed one. */
    writers: list(writerRule).optional(),
  }).optional(),
  exec: z.strictObject({
    denyMemfd: z.boolean().optional(),
    deny: list(fileRule).optional(),
    /** deny: only exec.allow's inodes run or map executable (in scope); allow (the default): any not denied. */
    default: z.enum(["allow", "deny"]).optional(),
    allow: list(execAllowRule).optional(),
  }).optional(),
  network: z.strictObject({
    egress: z.strictObject({
      denyPacketSockets: z.boolean().optional(),
      forwarded: z.boolean().optional(),
      nat64Prefixes: names(nat64Prefix).optional(),
      default: z.enum(["allow", "deny"], {
        error: 'the egress default is "allow" (today\'s behaviour) or "deny" (an allowlist)',
      }).optional(),
      /** The least time an address learned for a name is kept, in seconds, whatever its TTL says. */
      nameTtlFloor: z.int({ error: "nameTtlFloor is a number of seconds, e.g. 30" }).min(1, {
        error: "nameTtlFloor is at least 1 second",
      }).max(86400, { error: "nameTtlFloor is at most 86400 seconds (a day)" }).optional(),
      deny: list(egressRule).optional(),
      allow: list(egressRule).optional(),
      users: list(userRule).optional(),
    }).optional(),
    bind: z.strictObject({ deny: list(bindRule).optional() }).optional(),
    ingress: ingress.optional(),
  }).optional(),
  /** Probes run after every change of the rules in force; a failed one rolls back (lib/ops/self_check.ts). */
  checks: checksSchema.optional(),
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

/** The policy schema without the checks that span rules (see `policySchema`). */
export const policyObject = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal("Policy"),
  metadata,
  spec,
});

export type Policy = z.output<typeof policyObject>;
export type FileRule = z.output<typeof fileRule>;
export type ExecAllowRule = z.output<typeof execAllowRule>;
export type ProtectRule = z.output<typeof protectRule>;
export type WriterRule = z.output<typeof writerRule>;
export type NetRuleSpec = z.output<typeof netRule>;
export type EgressRuleSpec = z.output<typeof egressRule>;
export type PortRuleSpec = z.output<typeof portRule>;
export type BindRuleSpec = z.output<typeof bindRule>;
export type UserRuleSpec = z.output<typeof userRule>;
export type PolicyPath = (string | number)[];

type RuleOf = {
  "files.deny": FileRule;
  "exec.deny": FileRule;
  "network.egress.deny": EgressRuleSpec;
  "network.egress.allow": EgressRuleSpec;
  "network.egress.users": UserRuleSpec;
  "network.bind.deny": BindRuleSpec;
  "network.ingress.failsafe": PortRuleSpec;
  "network.ingress.allow": NetRuleSpec;
  "network.ingress.deny": NetRuleSpec;
  "exec.allow": ExecAllowRule;
  "files.protect": ProtectRule;
  "files.writers": WriterRule;
};
export type RuleList = keyof RuleOf;

/** A rule of a policy: its list, its text and its effective id (written, or generated from where it stands). */
export type RuleRef = { [L in RuleList]: { list: L; rule: RuleOf[L]; id: string } }[RuleList];
/** A rule with whether its id was written and its key path. */
export type PolicyRule = RuleRef & { explicitId: boolean; path: PolicyPath };

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
  // Last, in the order they were added: rules numbered before them keep the numbers they had before them.
  "exec.allow": (spec) => spec.exec?.allow,
  "files.protect": (spec) => spec.files?.protect,
  "files.writers": (spec) => spec.files?.writers,
};

/**
 * Calls `visit` for every rule in rule-number order with its list, place and effective id; a rule without an
 * id is named after its place, e.g. `files.deny[0]`. Builds nothing per rule but the generated id: a fleet
 * policy may hold 100,000 rules.
 */
export function forEachRule(
  spec: Policy["spec"],
  visit: <L extends RuleList>(list: L, rule: RuleOf[L], index: number, id: string) => void,
): void {
  for (const list of Object.keys(LISTS) as RuleList[]) {
    const rules = LISTS[list](spec) ?? [];
    const single = list === "network.ingress.failsafe";
    for (let index = 0; index < rules.length; index++) {
      const rule = rules[index]!;
      visit(list, rule, index, rule.id ?? (single ? list : `${list}[${index}]`));
    }
  }
}

/** The key path of a rule of `list` at `index`. */
export function rulePath(list: RuleList, index: number): PolicyPath {
  return ["spec", ...list.split("."), ...(list === "network.ingress.failsafe" ? [] : [index])];
}

/** Every rule in rule-number order, with its effective id (see `forEachRule`) and path. */
export function policyRules(policy: Pick<Policy, "spec">): PolicyRule[] {
  const entries: PolicyRule[] = [];
  forEachRule(policy.spec, (list, rule, index, id) => {
    const path = rulePath(list, index);
    entries.push({ list, rule, id, explicitId: rule.id !== undefined, path } as PolicyRule);
  });
  return entries;
}

/** A problem that spans rules: where (a key path) and what. */
export type CrossRuleIssue = { path: PolicyPath; input: unknown; message: string };

/**
 * The checks that span rules: unique rule ids and one users entry per uid or gid. Builds no generated id:
 * a generated id (`network.egress.deny[3]`) holds brackets, which a written id cannot, so only written ids
 * and the one unbracketed generated id (`network.ingress.failsafe`) can clash.
 */
export function crossRuleIssues(spec: Policy["spec"]): CrossRuleIssue[] {
  const issues: CrossRuleIssue[] = [];
  const seen = new Map<string, [RuleList, number]>();
  const users = new Set<string>();
  for (const list of Object.keys(LISTS) as RuleList[]) {
    const rules = LISTS[list](spec) ?? [];
    const single = list === "network.ingress.failsafe";
    for (let index = 0; index < rules.length; index++) {
      const rule = rules[index]!;
      const id = rule.id ?? (single ? list : undefined);
      if (id !== undefined) {
        const first = seen.get(id);
        if (first) {
          issues.push({
            path: [...rulePath(list, index), "id"],
            input: id,
            message: `rule id "${id}" is already used at ${
              pathText(rulePath(...first))
            }; rule ids must be unique`,
          });
        } else {
          seen.set(id, [list, index]);
        }
      }
      if (list !== "network.egress.users") continue;
      const user = rule as UserRuleSpec;
      const owner = user.uid !== undefined ? `uid ${user.uid}` : `gid ${user.gid}`;
      const who = user.exe === undefined
        ? owner
        : `${owner} with exe ${user.exe}${user.children ? " (children)" : ""}`;
      if (users.has(who)) {
        issues.push({
          path: rulePath(list, index),
          input: rule,
          message: `${who} has a users entry already; merge the two entries into one`,
        });
      }
      users.add(who);
    }
  }
  return issues;
}

/** The policy schema, with the checks that span rules (`crossRuleIssues`). */
export const policySchema = policyObject.superRefine((policy, ctx) => {
  for (const issue of crossRuleIssues(policy.spec)) ctx.addIssue({ code: "custom", ...issue });
});

/** `spec.files.deny[0].path` for a path of keys and indexes. */
export function pathText(path: readonly PropertyKey[]): string {
  return path.map((part, i) => typeof part === "number" ? `[${part}]` : `${i ? "." : ""}${String(part)}`)
    .join("") || "the document";
}
