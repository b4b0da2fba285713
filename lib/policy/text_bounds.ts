/**
 * Guards that run over policy text before any parser builds a document from it: one linear pass that finds
 * nesting too deep or a mapping with too many keys (YAML block and flow, and JSON), and a JSON checker that
 * finds where a syntax error is when V8 does not say. Both keep memory flat whatever the text, so a hostile
 * file is refused in time proportional to its size instead of exhausting the parser.
 *
 * The scan is a guard, not a parser: it follows quotes, comments and block scalars closely enough that the
 * nesting it counts is never less than the nesting a YAML or JSON parser would build.
 */

/** A policy nests 7 levels deep; anything far deeper is an attack on the parser, not a policy. */
export const MAX_DEPTH = 32;
/** A policy mapping has a few dozen keys at most. */
export const MAX_KEYS = 1000;
/** Ten times the largest rule list the benchmarks apply (100,000 rules). */
export const MAX_ITEMS = 1_000_000;

/** A policy's strings are paths, names and reasons; a longer one is an attack on the parser. */
export const MAX_SCALAR = 64 * 1024;

/** Where the text breaks a bound, and what it breaks. */
export type BoundProblem = { offset: number; detail: string };

const NL = 10;
const SPACE = 32;
const TAB = 9;
const CR = 13;

/** The first place `text` nests deeper than `MAX_DEPTH` or has a mapping with more than `MAX_KEYS` keys. */
export function checkBounds(text: string): BoundProblem | undefined {
  const deep = (offset: number): BoundProblem => ({
    offset,
    detail: `nesting is too deep; a policy nests at most ${MAX_DEPTH} levels`,
  });
  const long = (offset: number): BoundProblem => ({
    offset,
    detail: `a value longer than ${MAX_SCALAR} characters; a policy value is a path, a name or a reason`,
  });
  const many = (offset: number, map: boolean): BoundProblem => ({
    offset,
    detail: map
      ? `a mapping with more than ${MAX_KEYS} keys; a policy mapping has a few dozen`
      : `a list with more than ${MAX_ITEMS} items; split the policy or use wider CIDRs`,
  });
  // Block levels: the column each starts at and how many keys or items it holds so far.
  const blockIndent: number[] = [];
  const blockKeys: number[] = [];
  // Flow levels: `{` or `[`, and how many keys or items (by commas) each holds so far.
  const flowIsMap: boolean[] = [];
  const flowKeys: number[] = [];
  let quote = 0; // the open quote character, or 0
  let quoteStart = 0;
  let wordStart = -1; // where the run of plain characters the scan is in began, or -1
  let lineStart = true;
  let blockScalarIndent = -1; // inside a block scalar (`|`, `>`) whose header line had this indent
  let lineIndent = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    if (lineStart) {
      lineStart = false;
      let column = 0;
      while (i < n && (text.charCodeAt(i) === SPACE || text.charCodeAt(i) === TAB)) i++, column++;
      if (i >= n) break;
      const c = text.charCodeAt(i);
      if (c === NL || c === CR) {
        lineStart = c === NL;
        continue;
      }
      if (blockScalarIndent >= 0) {
        if (column > blockScalarIndent) {
          i = lineEnd(text, i);
          lineStart = true;
          continue;
        }
        blockScalarIndent = -1;
      }
      if (quote === 0 && flowIsMap.length === 0 && c !== 35 /* # */) {
        lineIndent = column;
        while (blockIndent.length > 0 && blockIndent[blockIndent.length - 1]! > column) {
          blockIndent.pop();
          blockKeys.pop();
        }
        if (blockIndent[blockIndent.length - 1] !== column) {
          blockIndent.push(column);
          blockKeys.push(0);
        }
        // Compact nesting on one line: `- - x`, `- key: v`, `? key`.
        let at = i;
        let col = column;
        let content = true;
        if (text[at] === "-" && isBlank(text.charCodeAt(at + 1))) {
          const items = blockKeys[blockKeys.length - 1]! + 1;
          blockKeys[blockKeys.length - 1] = items;
          if (items > MAX_ITEMS) return many(at, false);
        }
        while ((text[at] === "-" || text[at] === "?") && isBlank(text.charCodeAt(at + 1))) {
          at += 1;
          col += 1;
          while (text.charCodeAt(at) === SPACE) at++, col++;
          const next = text.charCodeAt(at);
          content = !(at >= n || next === NL || next === CR || next === 35);
          if (!content) break;
          blockIndent.push(col);
          blockKeys.push(0);
          if (blockIndent.length > MAX_DEPTH) return deep(at);
        }
        if (content) {
          // A line's content starts a key (or a scalar) of the innermost level.
          const keys = (blockKeys[blockKeys.length - 1] ?? 0) + 1;
          blockKeys[blockKeys.length - 1] = keys;
          if (keys > MAX_KEYS) return many(at, true);
        }
        if (blockIndent.length > MAX_DEPTH) return deep(i);
        i = at - 1;
        continue;
      }
      i -= 1;
      continue;
    }
    const c = text.charCodeAt(i);
    if (quote !== 0) {
      if (c === NL) lineStart = true;
      else if (c === 92 /* \ */ && quote === 34) i++;
      else if (c === quote) {
        if (quote === 39 && text.charCodeAt(i + 1) === 39) i++;
        else quote = 0;
      }
      if (i - quoteStart > MAX_SCALAR) return long(quoteStart);
      continue;
    }
    if (isBlank(c) || isFlowIndicator(c)) wordStart = -1;
    else if (wordStart < 0) wordStart = i;
    else if (i - wordStart >= MAX_SCALAR) return long(wordStart);
    if (c === NL) {
      lineStart = true;
      continue;
    }
    const before = i === 0 ? SPACE : text.charCodeAt(i - 1);
    switch (c) {
      case 34: // "
      case 39: // '
        if (isBlank(before) || before === 91 || before === 123 || before === 44 || before === 58) {
          quote = c;
          quoteStart = i;
          wordStart = -1;
        }
        break;
      case 35: // #
        if (isBlank(before)) {
          i = lineEnd(text, i) - 1;
        }
        break;
      case 91: // [
      case 123: // {
        flowIsMap.push(c === 123);
        flowKeys.push(1);
        if (blockIndent.length + flowIsMap.length > MAX_DEPTH) return deep(i);
        break;
      case 93: // ]
      case 125: // }
        flowIsMap.pop();
        flowKeys.pop();
        break;
      case 44: // ,
        if (flowIsMap.length > 0) {
          const map = flowIsMap[flowIsMap.length - 1]!;
          const entries = flowKeys[flowKeys.length - 1]! + 1;
          flowKeys[flowKeys.length - 1] = entries;
          if (entries > (map ? MAX_KEYS : MAX_ITEMS)) return many(i + 1, map);
        }
        break;
      case 124: // |
      case 62: // >
        if (flowIsMap.length === 0 && isBlockScalarHeader(text, i)) blockScalarIndent = lineIndent;
        break;
    }
  }
  return undefined;
}

function isFlowIndicator(code: number): boolean {
  return code === 44 || code === 91 || code === 93 || code === 123 || code === 125;
}

function isBlank(code: number): boolean {
  return code === SPACE || code === TAB || code === NL || code === CR || Number.isNaN(code);
}

function lineEnd(text: string, from: number): number {
  const end = text.indexOf("\n", from);
  return end < 0 ? text.length : end;
}

/** `key: |`, `- >-`, `|2+ # comment`: the rest of the line holds only indicators and a comment. */
function isBlockScalarHeader(text: string, at: number): boolean {
  const before = text.charCodeAt(at - 1);
  if (!isBlank(before) && before !== 58) return false;
  const rest = text.slice(at + 1, Math.min(lineEnd(text, at), at + 8));
  return /^[-+0-9]*\s*(#.*)?$/.test(rest) || /^[-+0-9]*\s+#/.test(rest);
}

/**
 * The keys JSON text writes, as `jsonKeysWritten` counts them, when one pass finds the text within every bound
 * `checkBounds` checks; undefined when it may break one. For text that is valid JSON the bounds are those
 * `checkBounds` applies to it (the line the document starts on is a level; a container holds its commas and
 * one more entries), and each is checked here as strictly or more: when this passes, `checkBounds` passes.
 * Quicker than `checkBounds` (a string is skipped with one search for its closing quote), it serves clean
 * JSON, what fleets generate; anything else goes to `checkBounds`, which says where the problem is.
 */
export function jsonKeysWithinBounds(text: string): number | undefined {
  // Entries so far (commas and one) of each open container, and whether it is a mapping.
  const entries: number[] = [];
  const isMap: boolean[] = [];
  let keys = 0;
  let word = 0; // characters in the run outside strings the scan is in
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    switch (c) {
      case 34: { // "
        let end = text.indexOf('"', i + 1);
        while (end > 0 && escaped(text, end)) end = text.indexOf('"', end + 1);
        if (end < 0 || end - i >= MAX_SCALAR) return undefined;
        let at = end + 1;
        let next = text.charCodeAt(at);
        while (next === SPACE || next === TAB || next === NL || next === CR) next = text.charCodeAt(++at);
        if (next === 58 /* : */) keys++;
        i = end;
        word = 0;
        break;
      }
      case 91: // [
      case 123: // {
        // The document's first line is a level, then each container.
        if (entries.length + 2 > MAX_DEPTH) return undefined;
        entries.push(1);
        isMap.push(c === 123);
        word = 0;
        break;
      case 93: // ]
      case 125: // }
        entries.pop();
        isMap.pop();
        word = 0;
        break;
      case 44: { // ,
        const top = entries.length - 1;
        if (top >= 0) {
          const count = entries[top]! + 1;
          entries[top] = count;
          if (count > (isMap[top] ? MAX_KEYS : MAX_ITEMS)) return undefined;
        }
        word = 0;
        break;
      }
      case SPACE:
      case TAB:
      case NL:
      case CR:
        word = 0;
        break;
      default:
        if (++word >= MAX_SCALAR) return undefined;
    }
  }
  return keys;
}

/** Whether the quote at `at` is escaped: an odd run of backslashes before it. */
function escaped(text: string, at: number): boolean {
  let backslashes = 0;
  while (text.charCodeAt(at - 1 - backslashes) === 92) backslashes++;
  return backslashes % 2 === 1;
}

const LITERAL = /true|false|null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/** How many keys JSON text writes (a string followed by a colon), in one pass without regular expressions. */
export function jsonKeysWritten(text: string): number {
  let keys = 0;
  for (let at = text.indexOf('"'); at >= 0; at = text.indexOf('"', at)) {
    let end = at + 1;
    for (let c = text.charCodeAt(end); c !== 34 && end < text.length; c = text.charCodeAt(++end)) {
      if (c === 92) end++;
    }
    at = end + 1;
    let c = text.charCodeAt(at);
    while (c === SPACE || c === TAB || c === NL || c === CR) c = text.charCodeAt(++at);
    if (c === 58) keys++;
  }
  return keys;
}

/**
 * Where the first JSON syntax error is, for the errors V8 reports without a position (`Unexpected token`,
 * `Unexpected end of JSON input`). Iterative, constant memory beyond a stack as deep as the nesting.
 */
export function jsonErrorOffset(text: string): number {
  let i = 0;
  const n = text.length;
  const stack: number[] = []; // 123 `{` or 91 `[`
  const ws = () => {
    for (
      let c = text.charCodeAt(i);
      c === SPACE || c === TAB || c === NL || c === CR;
      c = text.charCodeAt(++i)
    );
  };
  const string = (): boolean => {
    if (text[i] !== '"') return false;
    for (i++; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c === 34) return ++i, true;
      if (c < 32) return false;
      if (c === 92) {
        const e = text[++i];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) return false;
          i += 4;
        } else if (e === undefined || !'"\\/bfnrt'.includes(e)) return false;
      }
    }
    return false;
  };
  const scalar = (): boolean => {
    LITERAL.lastIndex = i;
    if (!LITERAL.test(text)) return false;
    i = LITERAL.lastIndex;
    return true;
  };
  // A value, then what may follow it, until the outermost value closes.
  for (;;) {
    ws();
    const c = text.charCodeAt(i);
    if (c === 123 || c === 91) {
      stack.push(c);
      i++;
      ws();
      if (text.charCodeAt(i) === (c === 123 ? 125 : 93)) {
        stack.pop();
        i++;
      } else if (c === 123) {
        if (!string()) return i;
        ws();
        if (text[i] !== ":") return i;
        i++;
        continue;
      } else continue;
    } else if (c === 34 ? !string() : !scalar()) return i;
    // After a value: a comma and the next member, a closing bracket, or the end.
    for (;;) {
      ws();
      const top = stack[stack.length - 1];
      if (top === undefined) return i;
      const next = text.charCodeAt(i);
      if (next === 44) {
        i++;
        if (top === 123) {
          ws();
          if (!string()) return i;
          ws();
          if (text[i] !== ":") return i;
          i++;
        }
        break;
      }
      if (next !== (top === 123 ? 125 : 93)) return i;
      stack.pop();
      i++;
    }
  }
}
