/**
 * Validation of a parsed policy document, fast where a policy is large. A fleet policy is a long list of
 * rules of two shapes (network rules: `{cidr}`, `{cidr, port}`; file rules: `{path}`), and zod spends
 * microseconds on each and copies it. Each rule of the big lists is checked here by hand against exactly
 * what the schema says of it, and kept as it is when zod's copy would equal it; zod validates the rest of the document with those lists left empty, and the checks that span
 * rules run on the result. Anything that fails on the fast path is validated again by zod, whole, so every
 * problem is reported as zod words it: the fast path decides nothing zod would decide differently.
 */
import {
  cidrProblem,
  crossRuleIssues,
  type EgressRuleSpec,
  type ExecAllowRule,
  type FileRule,
  isAbsoluteClean,
  MAX_FILES_LIMIT,
  type NetRuleSpec,
  type Policy,
  policyObject,
  policySchema,
  type ProtectRule,
  RULE_ID_PATTERN,
  SHA256_PATTERN,
  TRUST_SOURCES,
  type TrustSource,
} from "./schema.ts";

type Parsed = ReturnType<typeof policySchema.safeParse>;
type ParseOptions = Parameters<typeof policySchema.safeParse>[1];

/** The big rule lists: where they sit (under `spec`) and how one rule of them is checked and copied. */
const LISTS: { path: readonly string[]; check: (rule: unknown) => object | undefined }[] = [
  { path: ["files", "deny"], check: fileRule },
  { path: ["exec", "deny"], check: fileRule },
  { path: ["exec", "allow"], check: execAllowRule },
  { path: ["files", "protect"], check: protectRule },
  { path: ["network", "egress", "deny"], check: egressRule },
  { path: ["network", "egress", "allow"], check: egressRule },
  { path: ["network", "ingress", "allow"], check: netRule },
  { path: ["network", "ingress", "deny"], check: netRule },
];

/** Like `policySchema.safeParse(value, options)`, with the same result, and fast on long rule lists. */
export function validatePolicy(value: unknown, options?: ParseOptions): Parsed {
  return validateFast(value) ?? policySchema.safeParse(value, options);
}

/** The validated policy, or undefined when anything is not as the fast path expects (then zod decides). */
function validateFast(value: unknown): Parsed | undefined {
  const spec = isRecord(value) ? value.spec : undefined;
  if (!isRecord(value) || !isRecord(spec)) return undefined;
  const lists: { path: readonly string[]; rules: object[] }[] = [];
  let skeleton: Record<string, unknown> = spec;
  for (const { path, check } of LISTS) {
    const items = at(spec, path);
    if (!Array.isArray(items) || items.length === 0) continue;
    const rules = new Array<object>(items.length);
    for (let i = 0; i < items.length; i++) {
      const rule = check(items[i]);
      if (rule === undefined) return undefined;
      rules[i] = rule;
    }
    lists.push({ path, rules });
    skeleton = withEmptyList(skeleton, path);
  }
  const result = policyObject.safeParse({ ...value, spec: skeleton });
  if (!result.success) return undefined;
  const policy = result.data;
  for (const { path, rules } of lists) {
    const parent = at(policy.spec, path.slice(0, -1)) as Record<string, unknown>;
    parent[path.at(-1)!] = rules;
  }
  if (crossRuleIssues(policy.spec).length > 0) return undefined;
  return result as Parsed & { data: Policy };
}

/** The keys of each rule shape, in schema order (the order zod writes them in its output). */
const NET_KEYS = ["id", "cidr", "port", "ports", "protocol"];
const EGRESS_KEYS = [...NET_KEYS, "host", "exe", "children", "optional"];
const FILE_KEYS = ["id", "path", "recursive", "optional", "maxFiles"];
const EXEC_ALLOW_KEYS = ["trust", ...FILE_KEYS, "sha256"];

/**
 * An egress rule (schema.ts `egressRule`): a network rule that may name a program (`exe`, `children`,
 * `optional`), as zod would output it, or undefined.
 */
function egressRule(rule: unknown): EgressRuleSpec | undefined {
  const order = isRecord(rule) ? keyOrder(rule, EGRESS_KEYS) : "invalid";
  if (order === "invalid") return undefined;
  const fields = rule as Record<string, unknown>;
  // A rule by host name: zod decides (HOST_NOT_SUPPORTED, or what is wrong with the pattern).
  if (fields.host !== undefined) return undefined;
  // The common rule, naming no program, is checked as it is: no copy of it is made (100,000 of them).
  if (fields.exe === undefined) {
    if (fields.children !== undefined || fields.optional !== undefined) return undefined;
    return netRule(rule);
  }
  const { exe, children, optional, ...net } = fields;
  if (typeof exe !== "string" || !isAbsoluteClean(exe)) return undefined;
  if (children !== undefined && typeof children !== "boolean") return undefined;
  if (optional !== undefined && typeof optional !== "boolean") return undefined;
  const checked = netRule(net);
  if (checked === undefined) return undefined;
  if (order === "ordered" && checked === net && net.ports === undefined) return rule as EgressRuleSpec;
  const copy: EgressRuleSpec = { ...checked, exe };
  if (children !== undefined) copy.children = children;
  if (optional !== undefined) copy.optional = optional;
  return copy;
}
const PROTECT_KEYS = ["id", "path", "recursive", "optional"];

/**
 * A network rule (schema.ts `netRule`) as zod would output it, or undefined. The rule itself when its keys
 * are written in schema order and it has no list (a fleet policy's `{cidr}`): nothing is copied for it.
 */
function netRule(rule: unknown): NetRuleSpec | undefined {
  const order = isRecord(rule) ? keyOrder(rule, NET_KEYS) : "invalid";
  if (order === "invalid") return undefined;
  const { id, cidr, port, ports, protocol } = rule as Record<string, unknown>;
  if (id !== undefined && !isRuleId(id)) return undefined;
  if (cidr !== undefined && (typeof cidr !== "string" || cidrProblem(cidr) !== undefined)) return undefined;
  if (port !== undefined && !isPort(port)) return undefined;
  if (ports !== undefined && !isPortList(ports)) return undefined;
  if (protocol !== undefined && protocol !== "tcp" && protocol !== "udp") return undefined;
  if (port !== undefined && ports !== undefined) return undefined;
  if (cidr === undefined && port === undefined && ports === undefined) return undefined;
  if (order === "ordered" && ports === undefined) return rule as NetRuleSpec;
  const copy: NetRuleSpec = {};
  if (id !== undefined) copy.id = id;
  if (cidr !== undefined) copy.cidr = cidr;
  if (port !== undefined) copy.port = port as number;
  if (ports !== undefined) copy.ports = [...ports as number[]];
  if (protocol !== undefined) copy.protocol = protocol;
  return copy;
}

/** A file or exec rule (schema.ts `fileRule`) as zod would output it (the rule itself when in order), or undefined. */
function fileRule(rule: unknown): FileRule | undefined {
  const order = isRecord(rule) ? keyOrder(rule, FILE_KEYS) : "invalid";
  if (order === "invalid") return undefined;
  const { id, path, recursive, optional, maxFiles } = rule as Record<string, unknown>;
  if (id !== undefined && !isRuleId(id)) return undefined;
  if (typeof path !== "string" || !isAbsoluteClean(path)) return undefined;
  if (recursive !== undefined && typeof recursive !== "boolean") return undefined;
  if (optional !== undefined && typeof optional !== "boolean") return undefined;
  if (maxFiles !== undefined && (!isIntIn(maxFiles, 1, MAX_FILES_LIMIT) || recursive !== true)) {
    return undefined;
  }
  if (order === "ordered") return rule as FileRule;
  const copy: FileRule = id === undefined ? { path } : { id, path };
  if (recursive !== undefined) copy.recursive = recursive;
  if (optional !== undefined) copy.optional = optional;
  if (maxFiles !== undefined) copy.maxFiles = maxFiles as number;
  return copy;
}

/** An exec.allow entry (schema.ts `execAllowRule`) as zod would output it, or undefined. */
function execAllowRule(rule: unknown): ExecAllowRule | undefined {
  const order = isRecord(rule) ? keyOrder(rule, EXEC_ALLOW_KEYS) : "invalid";
  if (order === "invalid") return undefined;
  const { sha256, trust, ...file } = rule as Record<string, unknown>;
  if (trust !== undefined) return trustRule(rule as Record<string, unknown>, order === "ordered");
  if (sha256 !== undefined && (typeof sha256 !== "string" || !SHA256_PATTERN.test(sha256))) return undefined;
  if (sha256 !== undefined && file.recursive === true) return undefined;
  const checked = fileRule(file);
  if (checked === undefined) return undefined;
  if (order === "ordered") return rule as ExecAllowRule;
  return sha256 === undefined ? checked : { ...checked, sha256 };
}

/** A `{ trust, id? }` exec.allow entry as zod would output it, or undefined. */
function trustRule(rule: Record<string, unknown>, ordered: boolean): ExecAllowRule | undefined {
  const { trust, id, ...rest } = rule;
  if (Object.keys(rest).length > 0 || !(TRUST_SOURCES as readonly unknown[]).includes(trust)) {
    return undefined;
  }
  if (id !== undefined && !isRuleId(id)) return undefined;
  if (ordered) return rule as ExecAllowRule;
  const source = trust as TrustSource;
  return id === undefined ? { trust: source } : { trust: source, id: id as string };
}

/** A files.protect entry (schema.ts `protectRule`) as zod would output it, or undefined. */
function protectRule(rule: unknown): ProtectRule | undefined {
  const order = isRecord(rule) ? keyOrder(rule, PROTECT_KEYS) : "invalid";
  if (order === "invalid") return undefined;
  const { id, path, recursive, optional } = rule as Record<string, unknown>;
  if (id !== undefined && !isRuleId(id)) return undefined;
  if (typeof path !== "string" || !isAbsoluteClean(path)) return undefined;
  if (recursive !== undefined && typeof recursive !== "boolean") return undefined;
  if (optional !== undefined && typeof optional !== "boolean") return undefined;
  if (order === "ordered") return rule as ProtectRule;
  const copy: ProtectRule = id === undefined ? { path } : { id, path };
  if (recursive !== undefined) copy.recursive = recursive;
  if (optional !== undefined) copy.optional = optional;
  return copy;
}

function isRuleId(id: unknown): id is string {
  return typeof id === "string" && id !== "default" && RULE_ID_PATTERN.test(id);
}

function isPort(port: unknown): port is number {
  return isIntIn(port, 1, 65535);
}

function isIntIn(value: unknown, min: number, max: number): boolean {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= min && value <= max;
}

function isPortList(ports: unknown): boolean {
  return Array.isArray(ports) && ports.length > 0 && ports.every(isPort) &&
    new Set(ports).size === ports.length;
}

/** Whether every key of `record` is one of `keys`, and whether they are written in that order. */
function keyOrder(
  record: Record<string, unknown>,
  keys: readonly string[],
): "ordered" | "unordered" | "invalid" {
  let last = -1;
  let ordered = true;
  for (const key in record) {
    const at = keys.indexOf(key);
    if (at < 0) return "invalid";
    if (at < last) ordered = false;
    last = at;
  }
  return ordered ? "ordered" : "unordered";
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    Object.getPrototypeOf(value) === Object.prototype;
}

function at(root: unknown, path: readonly string[]): unknown {
  let node = root;
  for (const key of path) node = isRecord(node) ? node[key] : undefined;
  return node;
}

/** A copy of `record` with the list at `path` empty; the objects on the way copied, the input untouched. */
function withEmptyList(record: Record<string, unknown>, path: readonly string[]): Record<string, unknown> {
  const [key, ...rest] = path as [string, ...string[]];
  const inner = record[key];
  return { ...record, [key]: rest.length === 0 ? [] : withEmptyList(inner as Record<string, unknown>, rest) };
}
