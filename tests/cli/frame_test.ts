import assert from "node:assert/strict";
import { aegisbpf, isPlain } from "./cli.ts";

/** Every command path `aegisbpf --help` lists. */
async function listedCommands(): Promise<string[][]> {
  const { stdout } = await aegisbpf(["--help"]);
  const section = stdout.split("Commands:\n")[1]?.split("\n\n")[0] ?? "";
  return section.split("\n").map((line) =>
    line.trim().split(/\s{3,}/)[0]!.split(" ").filter((word) => /^[a-z][a-z-]*$/.test(word))
  );
}

Deno.test("aegisbpf --help lists the commands and the global flags and exits 0", async () => {
  const { code, stdout, stderr } = await aegisbpf(["--help"]);
  assert.equal(code, 0);
  assert.equal(stderr, "");
  assert.match(stdout, /^Usage: aegisbpf <command> \[flags\]/);
  for (
    const word of [
      "version",
      "completions bash|zsh|fish",
      "--log-format",
      "--state-dir DIR",
      "--config-dir DIR",
    ]
  ) {
    assert.ok(stdout.includes(word), word);
  }
  assert.ok(isPlain(stdout));
});

Deno.test("every command listed answers --help with its usage on stdout and exit 0", async () => {
  const commands = await listedCommands();
  assert.ok(commands.length >= 3);
  for (const path of commands) {
    const { code, stdout, stderr } = await aegisbpf([...path, "--help"]);
    assert.equal(code, 0, path.join(" "));
    assert.equal(stderr, "", path.join(" "));
    assert.ok(stdout.startsWith(`Usage: aegisbpf ${path.join(" ")}`), stdout);
    const help = await aegisbpf(["help", ...path]);
    assert.equal(help.stdout, stdout, `aegisbpf help ${path.join(" ")}`);
  }
});

Deno.test("an unknown command exits 2 with one line naming the help to read", async () => {
  const { code, stdout, stderr } = await aegisbpf(["frobnicate"]);
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.equal(stderr, 'aegisbpf: error: unknown command "frobnicate"; see aegisbpf --help\n');
});

Deno.test("an unknown flag exits 2 with one line naming the command and its help", async () => {
  const { code, stderr } = await aegisbpf(["version", "--frob"]);
  assert.equal(code, 2);
  assert.equal(stderr, 'aegisbpf: error: unknown flag --frob for "version"; see aegisbpf version --help\n');
});

Deno.test("a bad global flag value exits 2 and says which values are valid", async () => {
  const { code, stderr } = await aegisbpf(["version", "--log-format", "xml"]);
  assert.equal(code, 2);
  assert.equal(stderr, 'aegisbpf: error: bad value "xml" for --log-format; use text, json or ocsf\n');
});

Deno.test("a missing argument exits 2", async () => {
  const { code, stderr } = await aegisbpf(["completions"]);
  assert.equal(code, 2);
  assert.equal(stderr, 'aegisbpf: error: missing SHELL for "completions"; see aegisbpf completions --help\n');
});

Deno.test("--log-format json prints a usage error as one JSON object and nothing else", async () => {
  const { code, stdout, stderr } = await aegisbpf(["--log-format", "json", "version", "--frob"]);
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.equal(stderr.trimEnd().split("\n").length, 1);
  assert.deepEqual(JSON.parse(stderr), {
    level: "error",
    error: 'unknown flag --frob for "version"; see aegisbpf version --help',
    exitCode: 2,
  });
});

Deno.test("no error prints a stack trace unless --log-level debug", async () => {
  const { stderr } = await aegisbpf(["completions", "tcsh"]);
  assert.doesNotMatch(stderr, /\bat .*\.ts:\d+/);
  const debug = await aegisbpf(["completions", "tcsh", "--log-level", "debug"]);
  assert.equal(debug.code, 2);
  assert.match(
    debug.stderr,
    /^aegisbpf: error: bad value "tcsh" for SHELL; use bash, zsh or fish\nInputError: /,
  );
  assert.match(debug.stderr, /\n\s+at .*parse\.ts:\d+/);
});

Deno.test("aegisbpf with no command prints the help on stderr and exits 2", async () => {
  const { code, stdout, stderr } = await aegisbpf([]);
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.match(stderr, /^Usage: aegisbpf <command>/);
});

Deno.test("colour appears only when asked off a terminal and never with NO_COLOR", async () => {
  assert.ok(isPlain((await aegisbpf(["--help"])).stdout));
  assert.ok(!isPlain((await aegisbpf(["--help"], { env: { FORCE_COLOR: "1" } })).stdout));
  assert.ok(isPlain((await aegisbpf(["--help"], { env: { FORCE_COLOR: "1", NO_COLOR: "1" } })).stdout));
  const error = await aegisbpf(["frob"], { env: { FORCE_COLOR: "1", NO_COLOR: "1" } });
  assert.ok(isPlain(error.stderr));
});

Deno.test("help on a terminal is coloured unless NO_COLOR is set", async () => {
  // script(1) gives the command a pseudo-terminal; TERM is all it needs from the environment.
  const main = new URL("../../main.ts", import.meta.url).pathname;
  const command = `${Deno.execPath()} run --allow-all ${main} --help`;
  // The environment without NO_COLOR (CI sets it), then TERM and what the case adds.
  const inherited = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([name]) => name !== "NO_COLOR"),
  );
  const onTerminal = (env: Record<string, string>) =>
    new Deno.Command("script", {
      args: ["-qec", command, "/dev/null"],
      clearEnv: true,
      env: { ...inherited, TERM: "xterm", ...env },
    }).output();
  const coloured = await onTerminal({});
  assert.equal(coloured.code, 0);
  assert.ok(!isPlain(new TextDecoder().decode(coloured.stdout)));
  const plain = await onTerminal({ NO_COLOR: "1" });
  assert.ok(isPlain(new TextDecoder().decode(plain.stdout)));
});

Deno.test("version prints aegisbpf, libbpf and kernel, as text or as one JSON object", async () => {
  const text = await aegisbpf(["version"]);
  assert.equal(text.code, 0);
  assert.match(text.stdout, /^aegisbpf +\d+\.\d+\.\d+\nlibbpf +\S+\nkernel +\S+\n$/);
  const json = await aegisbpf(["version", "--json"]);
  assert.equal(json.code, 0);
  const versions = JSON.parse(json.stdout);
  assert.deepEqual(Object.keys(versions), ["aegisbpf", "libbpf", "kernel"]);
  assert.equal(versions.kernel, Deno.osRelease());
});

Deno.test("a reader that closes the pipe early ends the command quietly with exit 0", async () => {
  const main = new URL("../../main.ts", import.meta.url).pathname;
  // The reader (true) is gone before aegisbpf writes, so the write fails with EPIPE.
  const script = `{ sleep 0.3; "${Deno.execPath()}" run --allow-all ${main} completions bash; } | true
echo "exit=\${PIPESTATUS[0]}"`;
  const { stdout, stderr } = await new Deno.Command("bash", { args: ["-c", script] }).output();
  assert.equal(new TextDecoder().decode(stdout), "exit=0\n");
  assert.equal(new TextDecoder().decode(stderr), "");
});
