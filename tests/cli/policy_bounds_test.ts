/**
 * Policy files built to exhaust the parser: each is refused with exit 2 and FILE:LINE:COL, using little CPU
 * time and memory. Before the text was bounded, 16 MiB of `[` took 50 s of CPU and 4 GB before V8 died.
 */
import assert from "node:assert/strict";
import { type Result, type Scratch, scratch } from "./cli.ts";

const MIB = 1024 * 1024;
/** CPU time (user + system), not wall time: it holds on a loaded machine and still catches a slow parser. */
const MAX_CPU_SECONDS = 2;
const MAX_PEAK_KIB = 256 * 1024;

/** Text of about `size` bytes: `head`, then `unit` repeated, then `tail`. */
function filled(head: string, unit: string, size: number, tail = ""): string {
  return head + unit.repeat(Math.floor((size - head.length - tail.length) / unit.length)) + tail;
}

function stairs(size: number): string {
  const lines: string[] = [];
  for (let i = 0, total = 0; total < size; i++, total += i + 3) lines.push(`${" ".repeat(i)}a:`);
  return lines.join("\n");
}

function laughs(): string {
  const lines = [`a: &a [${Array(9).fill('"lol"').join(",")}]`];
  for (let i = 1; i < 10; i++) {
    const name = String.fromCharCode(97 + i);
    lines.push(`${name}: &${name} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(",")}]`);
  }
  return lines.join("\n");
}

const BOMBS: [string, string, string, RegExp][] = [
  ["16 MiB of [", "brackets.json", "[".repeat(16 * MIB), /:1:32: error: nesting is too deep/],
  ["deep {", "braces.json", filled("", '{"a":', 16 * MIB), /:1:156: error: nesting is too deep/],
  [
    "a long JSON string",
    "string.json",
    filled('{"a":"', "x", 16 * MIB, '"}'),
    /:1:6: error: a value longer than/,
  ],
  [
    "many JSON keys",
    "keys.json",
    filled("{", '"k":1,', 16 * MIB, '"z":1}'),
    /:1:\d+: error: a mapping with more/,
  ],
  ["a flat JSON list", "list.json", filled("[", "1,", 16 * MIB, "]"), /:1:\d+: error: a list with more than/],
  ["deep YAML flow", "flow.yaml", filled("a: ", "[", 16 * MIB), /:1:35: error: nesting is too deep/],
  ["deep YAML block", "block.yaml", filled("", "- ", 16 * MIB), /:1:65: error: nesting is too deep/],
  ["YAML indentation stairs", "stairs.yaml", stairs(16 * MIB), /:33:33: error: nesting is too deep/],
  [
    "a long YAML string",
    "string.yaml",
    filled('a: "', "x", 16 * MIB, '"'),
    /:1:4: error: a value longer than/,
  ],
  ["many YAML keys", "keys.yaml", filled("", "k: 1\n", 16 * MIB), /:1001:1: error: a mapping with more/],
  ["YAML aliases (billion laughs)", "laughs.yaml", laughs(), /:1:7: error: a YAML anchor/],
  [
    "newlines, then binary",
    "lines.yaml",
    filled("", "\n", 16 * MIB, "\x01"),
    /:16777216:1: error: binary data/,
  ],
];

type Measured = Result & { wall: number; cpu: number; peakKib: number };

/** Runs aegisbpf under GNU time: its result, the wall and CPU seconds it took and its peak resident memory. */
async function measured(s: Scratch, args: string[]): Promise<Measured> {
  const result = await s.run(args, { prefix: ["/usr/bin/time", "-f", "%e %U %S %M"] });
  const lines = result.stderr.trimEnd().split("\n");
  const [wall, user, system, peakKib] = lines.pop()!.split(" ").map(Number);
  return { ...result, stderr: lines.join("\n"), wall: wall!, cpu: user! + system!, peakKib: peakKib! };
}

for (const [what, name, text, expected] of BOMBS) {
  Deno.test(`policy lint refuses ${what} with exit 2 and a position, in bounded time and memory`, async () => {
    await using s = await scratch();
    await Deno.writeTextFile(`${s.dir}/${name}`, text);
    const { code, stdout, stderr, wall, cpu, peakKib } = await measured(s, ["policy", "lint", name]);
    console.log(`${what}: ${wall.toFixed(2)} s, ${cpu.toFixed(2)} s CPU, VmHWM ${peakKib} KiB`);
    assert.equal(code, 2, stderr);
    assert.match(stdout, new RegExp(`^${name.replace(".", "\\.")}${expected.source}`));
    assert.ok(cpu < MAX_CPU_SECONDS, `${cpu} s of CPU`);
    assert.ok(peakKib < MAX_PEAK_KIB, `VmHWM ${peakKib} KiB`);
  });
}

Deno.test("policy apply --dry-run refuses 16 MiB of [ the same way", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/b.json`, "[".repeat(16 * MIB));
  const { code, stderr, cpu, peakKib } = await measured(s, ["policy", "apply", "--dry-run", "b.json"]);
  assert.equal(code, 2, stderr);
  assert.match(stderr, /^aegisbpf: error: b\.json:1:32: nesting is too deep/);
  assert.ok(cpu < MAX_CPU_SECONDS && peakKib < MAX_PEAK_KIB, `${cpu} s of CPU, VmHWM ${peakKib} KiB`);
});
