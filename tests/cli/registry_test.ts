import assert from "node:assert/strict";
import { allCommands } from "../../lib/cli/command.ts";
import { GLOBAL_OPTIONS, HELP_OPTION } from "../../lib/cli/globals.ts";
import { parseInvocation } from "../../lib/cli/parse.ts";
import { REGISTRY } from "../../main.ts";

const commands = allCommands(REGISTRY);

Deno.test("every command has a unique path and a one-line summary in lower case with no final period", () => {
  const paths = commands.map(({ path }) => path.join(" "));
  assert.equal(new Set(paths).size, paths.length);
  for (const entry of [...REGISTRY, ...commands.map(({ command }) => command)]) {
    assert.match(entry.summary, /^[a-z][^\n]*[^.]$/, entry.name);
  }
});

Deno.test("no command flag hides a global flag or --help", () => {
  const reserved = new Set([...Object.keys(GLOBAL_OPTIONS), ...Object.keys(HELP_OPTION), "h"]);
  for (const { path, command } of commands) {
    for (const [name, spec] of Object.entries(command.options)) {
      assert.ok(!reserved.has(name) && !reserved.has(spec.short ?? ""), `${path.join(" ")} --${name}`);
    }
  }
});

Deno.test("every example in the help is a command line aegisbpf accepts", () => {
  for (const { command } of commands) {
    for (const example of command.examples ?? []) {
      // A pipeline's every stage is an aegisbpf command line of its own.
      for (const stage of example.split(" | ")) {
        const [program, ...words] = shellWords(stage);
        assert.equal(program, "aegisbpf", example);
        const redirect = words.findIndex((word) => word.startsWith(">"));
        const argv = redirect === -1 ? words : words.slice(0, redirect);
        assert.doesNotThrow(() => parseInvocation(argv, REGISTRY), example);
      }
    }
  }
});

Deno.test("nothing but main.ts imports lib/commands/, and commands never import ffi/", async () => {
  const root = new URL("../../", import.meta.url);
  for await (const file of walk(new URL("lib/", root))) {
    const text = await Deno.readTextFile(file);
    const inCommands = file.pathname.includes("/lib/commands/");
    if (!inCommands) assert.doesNotMatch(text, /from "[^"]*\/commands\//, file.pathname);
    if (inCommands) assert.doesNotMatch(text, /from "[^"]*\/ffi\//, file.pathname);
  }
});

async function* walk(dir: URL): AsyncGenerator<URL> {
  for await (const entry of Deno.readDir(dir)) {
    const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
    if (entry.isDirectory) yield* walk(url);
    else if (entry.name.endsWith(".ts")) yield url;
  }
}

/** The words of a command line as a POSIX shell splits them: blanks outside quotes, '...' and "..." kept whole. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  for (const match of line.matchAll(/(?:'[^']*'|"(?:[^"\\]|\\.)*"|[^\s'"])+/g)) {
    words.push(match[0].replace(/'([^']*)'|"((?:[^"\\]|\\.)*)"/g, (_, single, double) => single ?? double));
  }
  return words;
}
