import assert from "node:assert/strict";
import { currentDeclarations, DECLARATIONS } from "../../scripts/man.ts";
import { type Command, defineCommand } from "./command.ts";
import { type Declarations, declarationsOf, lazyRegistry, type Loaders, loadRegistry } from "./lazy.ts";
import { runCli } from "./run.ts";
import { bufferWriter } from "./output.ts";

Deno.test("lib/commands/declarations.json is what `deno task man` writes from the command modules now", async () => {
  assert.equal(
    await Deno.readTextFile(DECLARATIONS),
    await currentDeclarations(),
    "lib/commands/declarations.json is stale: run deno task man",
  );
});

function greet(greeting: string): Command {
  return defineCommand({
    name: "greet",
    summary: "say hello",
    options: { loud: { type: "boolean", description: "shout" } },
    args: [{ name: "NAME", description: "who" }],
    run(ctx, { flags, args }) {
      const text = `${greeting} ${args.NAME}`;
      ctx.stdout.line(flags.loud ? text.toUpperCase() : text);
      return Promise.resolve(0);
    },
  }) as unknown as Command;
}

/** Loaders that count their imports. */
function counted(command: Command): { loaders: Loaders; loads: () => number } {
  let loads = 0;
  const load = () => {
    loads++;
    return Promise.resolve(command);
  };
  return {
    loaders: [{ name: "tools", summary: "tools", commands: [{ name: "greet", load }] }],
    loads: () => loads,
  };
}

async function cli(argv: string[], loaders: Loaders, declarations: Declarations) {
  const registry = lazyRegistry(loaders, declarations);
  const stdout = bufferWriter();
  const stderr = bufferWriter();
  const env = () => undefined;
  const code = await runCli(argv, registry, { stdout, stderr, stdoutIsTTY: false, stderrIsTTY: false, env });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

Deno.test("lazyRegistry() parses and helps from the declarations and imports a command only to run it", async () => {
  const { loaders, loads } = counted(greet("hello"));
  const declarations = declarationsOf(await loadRegistry(loaders));
  const before = loads();
  const help = await cli(["--help"], loaders, declarations);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /tools greet NAME\s+say hello/);
  assert.equal((await cli(["tools", "greet", "--help"], loaders, declarations)).code, 0);
  assert.equal((await cli(["tools", "greet", "--quiet", "x"], loaders, declarations)).code, 2);
  assert.equal(loads(), before, "nothing imported for help or a usage error");
  const ran = await cli(["tools", "greet", "--loud", "you"], loaders, declarations);
  assert.deepEqual([ran.code, ran.stdout], [0, "HELLO YOU\n"]);
  assert.equal(loads(), before + 1);
});

Deno.test("lazyRegistry() refuses to run a command its module declares otherwise (stale declarations)", async () => {
  const declarations = declarationsOf(await loadRegistry(counted(greet("hello")).loaders));
  const changed = { ...greet("hello"), summary: "say hello, or more" };
  const ran = await cli(["tools", "greet", "you"], counted(changed).loaders, declarations);
  assert.equal(ran.code, 1);
  assert.equal(ran.stdout, "");
  assert.match(
    ran.stderr,
    /declarations\.json declares it otherwise than its module for "tools greet": .*deno task man/,
  );
  assert.throws(() => lazyRegistry(counted(changed).loaders, {}), /has no declaration for "tools greet"/);
});
