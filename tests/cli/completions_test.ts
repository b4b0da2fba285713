import assert from "node:assert/strict";
import { aegisbpf } from "./cli.ts";

async function script(shell: string): Promise<string> {
  const { code, stdout, stderr } = await aegisbpf(["completions", shell]);
  assert.equal(code, 0, stderr);
  return stdout;
}

/** Top-level commands and groups, as `aegisbpf --help` names them. */
async function topWords(): Promise<string[]> {
  const { stdout } = await aegisbpf(["--help"]);
  const section = stdout.split("Commands:\n")[1]?.split("\n\n")[0] ?? "";
  return [...new Set(section.split("\n").map((line) => line.trim().split(" ")[0]!))];
}

async function shellAvailable(shell: string): Promise<boolean> {
  try {
    return (await new Deno.Command(shell, { args: ["-c", "exit 0"], stdout: "null", stderr: "null" })
      .output())
      .success;
  } catch {
    return false;
  }
}

/** What bash completes for the words typed so far (the last one is being completed). */
async function bashComplete(bash: string, words: string[]): Promise<string[]> {
  const source = `${bash}
COMP_WORDS=(${words.map((word) => `'${word}'`).join(" ")})
COMP_CWORD=${words.length - 1}
_aegisbpf
printf '%s\\n' "\${COMPREPLY[@]}"`;
  const { code, stdout, stderr } = await new Deno.Command("bash", { args: ["-c", source] }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  return new TextDecoder().decode(stdout).split("\n").filter((line) => line !== "");
}

Deno.test("completions bash is valid bash", async () => {
  const path = await Deno.makeTempFile({ suffix: ".bash" });
  try {
    await Deno.writeTextFile(path, await script("bash"));
    const { code, stderr } = await new Deno.Command("bash", { args: ["-n", path] }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("completions bash completes commands, subcommands, flags and fixed values", async () => {
  const bash = await script("bash");
  assert.deepEqual((await bashComplete(bash, ["aegisbpf", ""])).sort(), (await topWords()).sort());
  assert.deepEqual(await bashComplete(bash, ["aegisbpf", "vers"]), ["version"]);
  assert.deepEqual(await bashComplete(bash, ["aegisbpf", "--state-dir", "/tmp", "completions", ""]), [
    "bash",
    "zsh",
    "fish",
  ]);
  assert.deepEqual(await bashComplete(bash, ["aegisbpf", "policy", ""]), [
    "validate",
    "lint",
    "diff",
    "simulate",
    "suggest",
    "init",
    "test",
    "apply",
    "show",
    "history",
    "rollback",
    "sign",
    "verify",
  ]);
  assert.deepEqual(await bashComplete(bash, ["aegisbpf", "--log-level", "warn", "keys", "l"]), ["list"]);
  assert.deepEqual(await bashComplete(bash, ["aegisbpf", "policy", "sign", "p.yaml", "--o"]), ["--out"]);
  assert.deepEqual(await bashComplete(bash, ["aegisbpf", "version", "--j"]), ["--json"]);
  assert.deepEqual(await bashComplete(bash, ["aegisbpf", "version", "--log-format", ""]), [
    "text",
    "json",
    "ocsf",
  ]);
  assert.ok((await bashComplete(bash, ["aegisbpf", "version", "--"])).includes("--config-dir"));
});

Deno.test("completions zsh defines _aegisbpf for every command and is valid zsh where zsh is installed", async () => {
  const zsh = await script("zsh");
  assert.ok(zsh.startsWith("#compdef aegisbpf\n"));
  assert.match(zsh, /\n\s+compdef _aegisbpf aegisbpf\n/);
  for (const word of await topWords()) {
    // A description's own quote is written '\'' inside the single-quoted word.
    assert.match(zsh, new RegExp(`\\n\\s+'${word}:(?:[^']|'\\\\'')+'\\n`), word);
    assert.match(zsh, new RegExp(`\\n_aegisbpf_${word.replaceAll("-", "_")}\\(\\) \\{\\n`), word);
  }
  assert.ok(
    zsh.includes(
      "'--log-format[text, json or ocsf\\: how logs, errors and run events are printed (default text; ocsf\\: OCSF 1.3 events, json logs)]",
    ),
  );
  if (await shellAvailable("zsh")) {
    const { code, stderr } = await new Deno.Command("zsh", { args: ["-n", "-c", zsh] }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
  }
});

Deno.test("completions fish has one complete line per command and is valid fish where fish is installed", async () => {
  const fish = await script("fish");
  const lines = fish.trimEnd().split("\n").filter((line) => !line.startsWith("#"));
  assert.ok(lines.every((line) => line.startsWith("complete -c aegisbpf ")), fish);
  for (const word of await topWords()) {
    assert.ok(
      lines.includes(lines.find((line) => line.includes(`'__fish_use_subcommand' -a ${word} -d`)) ?? ""),
      word,
    );
  }
  assert.ok(
    lines.includes(
      "complete -c aegisbpf -n '__fish_seen_subcommand_from completions' -a 'bash zsh fish' -d 'the shell'",
    ),
  );
  if (await shellAvailable("fish")) {
    const { code, stdout, stderr } = await new Deno.Command("fish", {
      args: ["-c", `${fish}\ncomplete -C'aegisbpf completions '`],
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    assert.deepEqual(
      new TextDecoder().decode(stdout).trim().split("\n").map((line) => line.split("\t")[0]).sort(),
      [
        "bash",
        "fish",
        "zsh",
      ],
    );
  }
});

Deno.test("completions of an unknown shell exits 2 and names the shells", async () => {
  const { code, stderr } = await aegisbpf(["completions", "tcsh"]);
  assert.equal(code, 2);
  assert.equal(stderr, 'aegisbpf: error: bad value "tcsh" for SHELL; use bash, zsh or fish\n');
});
