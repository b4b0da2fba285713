/**
 * Policy text to a validated `Policy`, with every problem reported as `FILE:LINE:COL: what is wrong; what
 * would be valid`. YAML and JSON (which YAML reads too) share one path; anchors, aliases, merge keys and
 * tags are refused so that a policy reads exactly as it is written. Clean JSON is parsed without the YAML
 * module; YAML text, and any problem that needs a position, needs it loaded (lib/policy/yaml.ts: `yaml()`
 * throws `YamlNotLoaded` until then; lib/policy/parse.ts loads it up front).
 */
import type { Document, Node, YAMLError } from "yaml";
import type { z } from "zod";
import { yaml } from "./yaml.ts";
import { InputError, type Position } from "../errors.ts";
import { pathText, type Policy, type PolicyPath, policyRules } from "./schema.ts";
import { validatePolicy } from "./validate.ts";
import {
  checkBounds,
  jsonErrorOffset,
  jsonKeysWithinBounds,
  jsonKeysWritten,
  MAX_DEPTH,
} from "./text_bounds.ts";

/** The largest policy accepted: 100,000 CIDR rules take about 6 MB. */
export const MAX_POLICY_BYTES = 16 * 1024 * 1024;
/** Problems reported for one file at most: enough to fix, never a flood. */
export const MAX_PROBLEMS = 100;

/** One problem in a policy file, located. */
export type PolicyProblem = { message: string; position: Position; ruleId?: string };

/** An invalid policy. `message` is the first problem; `problems` lists all of them in file order. */
export class PolicyError extends InputError {
  override name = "PolicyError";
  readonly ruleId: string | undefined;
  readonly problems: readonly PolicyProblem[];
  constructor(problems: readonly [PolicyProblem, ...PolicyProblem[]]) {
    const [first] = problems;
    super(first.message, { position: first.position });
    this.ruleId = first.ruleId;
    this.problems = problems;
  }
}

/** A parsed policy with the way back from a key path to where it is written. */
export type PolicySource = { policy: Policy; file: string; locate(path: PolicyPath): Position };

/** Parses and validates policy text (YAML or JSON); throws a `PolicyError` naming FILE:LINE:COL. */
export function parsePolicy(text: string, file: string): Policy {
  return parsePolicySource(text, file).policy;
}

/** Like `parsePolicy`, keeping the positions of every key for lint and explain. */
export function parsePolicySource(text: string, file: string): PolicySource {
  const source: Source = new Source(text, file);
  const value = source.load();
  const result = validatePolicy(value, { reportInput: true, error: validHint });
  if (!result.success) {
    const issues = result.error.issues.slice(0, MAX_PROBLEMS);
    source.fail(issues.flatMap((issue) => source.problems(issue, value)).slice(0, MAX_PROBLEMS));
  }
  return { policy: result.data, file, locate: (path) => source.position(source.locate(path).offset) };
}

export { policySha256 } from "./digest.ts";

/** A policy file's text and exact bytes. */
export type PolicyFile = { path: string; text: string; bytes: Uint8Array };

/** Reads a policy file, refusing what cannot be one (a directory, a device, a huge file, non-UTF-8) clearly. */
export async function readPolicyFile(path: string, maxBytes = MAX_POLICY_BYTES): Promise<PolicyFile> {
  const at = { position: { file: path } };
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new InputError(`${path}: no such file`, at);
    if (error instanceof Deno.errors.PermissionDenied) throw new InputError(`${path}: permission denied`, at);
    throw error;
  }
  if (info.isDirectory) throw new InputError(`${path}: is a directory; give a policy file`, at);
  if (!info.isFile) throw new InputError(`${path}: is not a regular file; give a policy file`, at);
  if (info.size > maxBytes) throw new InputError(tooLarge(path, info.size, maxBytes), at);
  // The file may have grown since stat: read one byte more than allowed at most, never the whole file.
  const bytes = await readAtMost(path, maxBytes + 1, info.size);
  if (bytes.length > maxBytes) throw new InputError(tooLarge(path, bytes.length, maxBytes, "at least "), at);
  try {
    return { path, text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), bytes };
  } catch {
    throw new InputError(`${path}: is not UTF-8 text; a policy is YAML or JSON text`, at);
  }
}

/** The first `limit` bytes of a file, or all of it when it is shorter. */
async function readAtMost(path: string, limit: number, expected: number): Promise<Uint8Array> {
  using file = await Deno.open(path);
  let buffer = new Uint8Array(Math.min(limit, expected + 1));
  let size = 0;
  while (size < limit) {
    if (size === buffer.length) {
      const grown = new Uint8Array(Math.min(limit, buffer.length * 2));
      grown.set(buffer);
      buffer = grown;
    }
    const read = await file.read(buffer.subarray(size));
    if (read === null) break;
    size += read;
  }
  return buffer.subarray(0, size);
}

function tooLarge(file: string, size: number, limit = MAX_POLICY_BYTES, atLeast = ""): string {
  const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${file}: the policy is ${atLeast}${mib(size)}; a policy may be at most ${mib(limit)}`;
}

class Source {
  #lineStarts: Uint32Array | undefined;
  #doc: Document | undefined;
  constructor(readonly text: string, readonly file: string) {}

  /** The document as plain data, or a `PolicyError` for text that is not one clean YAML or JSON document. */
  load(): unknown {
    if (this.text.length > MAX_POLICY_BYTES) {
      throw new PolicyError([{
        message: tooLarge(this.file, this.text.length),
        position: { file: this.file },
      }]);
    }
    // deno-lint-ignore no-control-regex -- finding control characters is the point
    const binary = /[\0-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]/.exec(this.text);
    if (binary) {
      const code = binary[0].codePointAt(0)!.toString(16).padStart(2, "0");
      this.fail([this.problem(binary.index, `binary data (U+${code}); a policy is YAML or JSON text`)]);
    }
    const looksJson = /^\s*[{[]/.test(this.text);
    // Clean JSON within the bounds (what fleets generate) takes one quick pass and JSON.parse; anything else,
    // and every problem, the whole way below, which finds the same and says where.
    if (looksJson) {
      const plain = plainJson(this.text);
      if (plain !== undefined) return plain;
    }
    // Before any parser builds a document: a hostile file is refused in one pass over its text.
    const bound = checkBounds(this.text);
    if (bound) this.fail([this.problem(bound.offset, bound.detail)]);
    const json = looksJson ? this.#parseJson() : undefined;
    // Clean JSON skips the YAML parser, many times slower on large rule sets; the document is parsed
    // for positions only when a problem needs one.
    if (json !== undefined && isPlainJson(this.text, json)) return json;
    const doc = this.#document();
    return json ?? doc.toJS({ maxAliasCount: 0 });
  }

  /** The YAML document, parsed once and checked for what a policy must not use. */
  #document(): Document {
    if (this.#doc) return this.#doc;
    // Tabs are whitespace in JSON but not YAML indentation; outside strings (where JSON forbids raw tabs)
    // a space reads the same and keeps every offset.
    const doc = this.#parseYaml(/^\s*[{[]/.test(this.text) ? this.text.replaceAll("\t", " ") : this.text);
    if (doc.contents === null) {
      this.fail([this.problem(0, "the file is empty; a policy starts with apiVersion: aegisbpf.io/v1")]);
    }
    this.#refuseIndirection(doc.contents);
    return this.#doc = doc;
  }

  #parseJson(): unknown {
    try {
      return JSON.parse(this.text);
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw error;
      const at = /at position (\d+)/.exec(error.message);
      const what = error.message.replace(/ in JSON at position.*$/, "").replace(
        /, (?:\.\.\.)?".*" is not valid JSON$/s,
        "",
      );
      const offset = at ? Number(at[1]) : jsonErrorOffset(this.text);
      this.fail([this.problem(offset, `invalid JSON: ${lowerFirst(what)}; fix the JSON syntax`)]);
    }
  }

  #parseYaml(text: string): Document {
    const doc = this.#parseDocument(text);
    const problems = [...doc.errors, ...doc.warnings].map((error) => this.#yamlProblem(error));
    if (problems.length) this.fail(problems);
    return doc;
  }

  #parseDocument(text: string): Document {
    try {
      return yaml().parseDocument(text, { uniqueKeys: true, prettyErrors: false, merge: false });
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      this.fail([this.problem(0, `nesting is too deep; a policy nests at most ${MAX_DEPTH} levels`)]);
    }
  }

  #yamlProblem(error: YAMLError): PolicyProblem {
    const [start, end] = error.pos;
    switch (error.code) {
      case "DUPLICATE_KEY": {
        const key = this.text.slice(start, Math.max(end, this.text.indexOf(":", start))).trim();
        return this.problem(start, `duplicate key ${key}; each key may appear once in a mapping`);
      }
      case "MULTIPLE_DOCS":
        return this.problem(start, "a second YAML document; a policy file holds exactly one document");
      case "TAB_AS_INDENT":
        return this.problem(start, "a tab used as indentation; indent with spaces");
      case "RESOURCE_EXHAUSTION":
        return this.problem(start, `nesting is too deep; a policy nests at most ${MAX_DEPTH} levels`);
      default:
        return this.problem(start, `${lowerFirst(error.message.split("\n")[0]!)}; fix the YAML syntax`);
    }
  }

  /** Refuses anchors, aliases, tags and merge keys, non-string keys, and nesting deeper than MAX_DEPTH. */
  #refuseIndirection(root: Node | null): void {
    const { isAlias, isMap, isNode, isScalar, isSeq } = yaml();
    const stack: [unknown, number][] = [[root, 0]];
    const problems: PolicyProblem[] = [];
    while (stack.length) {
      const [node, depth] = stack.pop()!;
      if (!isNode(node)) continue;
      const at = node.range?.[0] ?? 0;
      if (depth > MAX_DEPTH) {
        this.fail([this.problem(at, `nesting is too deep; a policy nests at most ${MAX_DEPTH} levels`)]);
      }
      if (isAlias(node)) {
        problems.push(this.problem(at, "a YAML alias (*name); write the value out where it is used"));
      }
      if (node.anchor) {
        problems.push(this.problem(at, "a YAML anchor (&name); write the value out where it is used"));
      }
      if (node.tag) problems.push(this.problem(at, `a YAML tag (${node.tag}); write a plain value`));
      if (isSeq(node)) stack.push(...node.items.map((item): [unknown, number] => [item, depth + 1]));
      if (!isMap(node)) continue;
      for (const pair of node.items) {
        const key = pair.key;
        const keyAt = isNode(key) ? key.range?.[0] ?? at : at;
        if (!isScalar(key) || typeof key.value !== "string") {
          problems.push(this.problem(keyAt, "a key that is not a string; keys are names such as spec"));
        } else if (key.value === "<<") {
          problems.push(this.problem(keyAt, "a YAML merge key (<<); write the keys out"));
        }
        stack.push([key, depth + 1], [pair.value, depth + 1]);
      }
    }
    if (problems.length) this.fail(problems);
  }

  /** The problems one zod issue stands for: one per unknown key, else one. */
  problems(issue: z.core.$ZodIssue, value: unknown): PolicyProblem[] {
    const path = issue.path as PolicyPath;
    const ruleId = ruleIdAt(value, path);
    const withRule = (problem: PolicyProblem) => ruleId === undefined ? problem : { ...problem, ruleId };
    if (issue.code === "unrecognized_keys") {
      return issue.keys.map((key) =>
        withRule(this.problem(
          this.locateKey(path, key),
          `${pathText([...path, key])}: unknown key; ${issue.message}`,
        ))
      );
    }
    const detail = issue.code === "custom" ? issue.message : `${whatIsWrong(issue)}; ${issue.message}`;
    return [withRule(this.problem(this.locate(path).offset, `${pathText(path)}: ${detail}`))];
  }

  /** Where the node a key path names is written, or its nearest written ancestor. */
  locate(path: PolicyPath): { node: unknown; offset: number } {
    let node: unknown = this.#document().contents;
    let offset = 0;
    for (const key of path) {
      const next = child(node, key);
      if (!next) break;
      node = next.value;
      offset = next.offset;
    }
    return { node, offset };
  }

  /** Where the key `key` of the mapping at `path` is written. */
  locateKey(path: PolicyPath, key: string): number {
    const map = this.locate(path);
    return child(map.node, key)?.keyOffset ?? map.offset;
  }

  position(offset: number): Position {
    const starts = this.#lineStarts ??= lineStarts(this.text);
    let low = 0;
    let high = starts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (starts[middle]! <= offset) low = middle;
      else high = middle - 1;
    }
    return { file: this.file, line: low + 1, column: offset - starts[low]! + 1 };
  }

  problem(offset: number, detail: string): PolicyProblem {
    const position = this.position(offset);
    return { message: `${this.file}:${position.line}:${position.column}: ${detail}`, position };
  }

  fail(problems: PolicyProblem[]): never {
    const sorted = problems.toSorted((a, b) =>
      (a.position.line ?? 0) - (b.position.line ?? 0) || (a.position.column ?? 0) - (b.position.column ?? 0)
    );
    throw new PolicyError(sorted as [PolicyProblem, ...PolicyProblem[]]);
  }
}

/** Where each line starts, compactly: a file of 16 Mi newlines takes 64 MiB here, not gigabytes. */
function lineStarts(text: string): Uint32Array {
  let lines = 1;
  for (let at = text.indexOf("\n"); at >= 0; at = text.indexOf("\n", at + 1)) lines++;
  const starts = new Uint32Array(lines);
  let line = 1;
  for (let at = text.indexOf("\n"); at >= 0; at = text.indexOf("\n", at + 1)) starts[line++] = at + 1;
  return starts;
}

/**
 * The value of JSON text that `jsonKeysWithinBounds` finds within the bounds (so `checkBounds` passes it too)
 * and that is plain (`isPlainJson`): what `Source.load` returns for it the whole way. Undefined otherwise.
 */
function plainJson(text: string): unknown {
  const written = jsonKeysWithinBounds(text);
  if (written === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return countKeys(value, 0) === written ? value : undefined;
}

/** JSON with no repeated key and no deep nesting: what the YAML path would accept unchanged. */
function isPlainJson(text: string, value: unknown): boolean {
  const keys = countKeys(value, 0);
  if (keys === undefined) return false;
  // More keys written than parsed means a key was repeated.
  return jsonKeysWritten(text) === keys;
}

/** The keys of every mapping in a parsed JSON value, or undefined when it nests deeper than MAX_DEPTH. */
function countKeys(node: unknown, depth: number): number | undefined {
  if (typeof node !== "object" || node === null) return 0;
  if (depth >= MAX_DEPTH) return undefined;
  let keys = 0;
  if (Array.isArray(node)) {
    for (const item of node) {
      const inner = countKeys(item, depth + 1);
      if (inner === undefined) return undefined;
      keys += inner;
    }
    return keys;
  }
  // Object.keys, not for...in: the own keys alone (all a parsed JSON object has), from V8's key cache.
  const names = Object.keys(node);
  for (let i = 0; i < names.length; i++) {
    const inner = countKeys((node as Record<string, unknown>)[names[i]!], depth + 1);
    if (inner === undefined) return undefined;
    keys += inner + 1;
  }
  return keys;
}

/** A child of a YAML collection with where it is written: an empty value points at its key. */
function child(
  node: unknown,
  key: string | number,
): { value: unknown; offset: number; keyOffset: number } | undefined {
  const { isMap, isNode, isPair, isScalar, isSeq } = yaml();
  if (isSeq(node) && typeof key === "number") {
    const item = node.items[key];
    const offset = isNode(item) ? item.range?.[0] ?? 0 : 0;
    return item === undefined ? undefined : { value: item, offset, keyOffset: offset };
  }
  if (!isMap(node)) return undefined;
  const pair = node.items.find((item) => isPair(item) && isScalar(item.key) && item.key.value === key);
  if (!pair) return undefined;
  const keyOffset = isNode(pair.key) ? pair.key.range?.[0] ?? 0 : 0;
  const value = pair.value;
  const empty = !isNode(value) ||
    (isScalar(value) && value.value === null && value.range?.[0] === value.range?.[1]);
  return { value, offset: empty ? keyOffset : value.range?.[0] ?? keyOffset, keyOffset };
}

/** The id of the rule a path points into, as the policy would name it (written or generated). */
function ruleIdAt(value: unknown, path: PolicyPath): string | undefined {
  const spec = (value as { spec?: unknown } | null)?.spec;
  if (typeof spec !== "object" || spec === null) return undefined;
  try {
    const rules = policyRules({ spec } as Pick<Policy, "spec">);
    return rules.find((rule) => rule.path.every((part, i) => path[i] === part))?.id;
  } catch {
    // The input is not policy-shaped where a rule list should be: no rule to name.
    return undefined;
  }
}

/** The "what would be valid" half of a message, for the issues the schema words no message for. */
function validHint(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case "invalid_type":
      return `expected ${expectedText(String(issue.expected))}`;
    case "invalid_value": {
      const values = issue.values.map(String);
      return values.length === 1
        ? `the only valid value is ${values[0]}`
        : `valid values are ${values.join(", ")}`;
    }
    case "unrecognized_keys": {
      const shape = (issue.inst?._zod.def as { shape?: Record<string, unknown> } | undefined)?.shape ?? {};
      return `valid keys here are ${Object.keys(shape).join(", ")}`;
    }
    default:
      return undefined;
  }
}

function expectedText(expected: string): string {
  const words: Record<string, string> = {
    object: "a mapping",
    array: "a list",
    string: "a string",
    number: "a number",
    int: "an integer",
    boolean: "true or false",
  };
  return words[expected] ?? expected;
}

function whatIsWrong(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type") {
    return issue.input === undefined ? "missing" : `found ${show(issue.input)}`;
  }
  return `${show(issue.input)} is not valid`;
}

/** A value as a message shows it: short, and never the whole of a large mapping or list. */
function show(value: unknown): string {
  if (value === null || value === undefined) return "an empty value";
  if (Array.isArray(value)) return value.length ? "a list" : "an empty list";
  if (typeof value === "object") return "a mapping";
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}
