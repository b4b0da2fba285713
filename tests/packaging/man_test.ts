/**
 * The manual page docs/aegisbpf.1 is what `deno task man` generates from the registry now, names every
 * command and flag, and renders with no warning from groff or man.
 */
import assert from "node:assert/strict";
import { REGISTRY } from "../../main.ts";
import { allCommands } from "../../lib/cli/command.ts";
import { CMDLINE_ENV } from "../../lib/agent/break_glass_watch.ts";
import { currentManPage, MAN_PAGE } from "../../scripts/man.ts";
import { REPO, run } from "./unit_file.ts";

const PAGE = MAN_PAGE.pathname;

Deno.test("docs/aegisbpf.1 is what `deno task man` generates from the registry now", async () => {
  assert.equal(
    await Deno.readTextFile(PAGE),
    await currentManPage(),
    "docs/aegisbpf.1 is stale: run deno task man",
  );
});

Deno.test("the man page renders every command and flag of the registry", async () => {
  const rendered = await run("man", ["-l", PAGE], {
    env: { MANWIDTH: "100", PATH: Deno.env.get("PATH")! },
  });
  assert.equal(rendered.code, 0, rendered.stderr);
  const text = rendered.stdout.replace(/‐\n\s*/g, "");
  for (const { path, command } of allCommands(REGISTRY)) {
    assert.match(text, new RegExp(`^   aegisbpf ${path.join(" ")}\\b`, "m"), path.join(" "));
    for (const flag of Object.keys(command.options)) {
      assert.ok(text.includes(`--${flag}`), `${path.join(" ")} --${flag}`);
    }
  }
  for (const section of ["EXIT STATUS", "ENVIRONMENT", "FILES", "GLOBAL FLAGS"]) {
    assert.match(text, new RegExp(`^${section}$`, "m"));
  }
  assert.ok(text.includes(CMDLINE_ENV));
  // Everything a user reads is in the repository: no pointer to a document outside it.
  assert.doesNotMatch(text, /SPEC|\.\.\//);
});

Deno.test("no document a user reads points outside the repository", async () => {
  const docs = ["README.md", "docs/aegisbpf.1", "packaging/systemd/aegisbpf.service"];
  for (const dir of ["docs", "docs/runbooks", "docs/schema"]) {
    for (const entry of Deno.readDirSync(`${REPO}${dir}`)) {
      if (entry.isFile) docs.push(`${dir}/${entry.name}`);
    }
  }
  for (const path of docs) {
    assert.doesNotMatch(await Deno.readTextFile(`${REPO}${path}`), /SPEC\b|\.\.\/shared|\.\.\/\.\.\//, path);
  }
});

Deno.test("groff and man render docs/aegisbpf.1 without a warning", async () => {
  const groff = await run("groff", ["-man", "-ww", "-z", PAGE]);
  assert.deepEqual([groff.code, groff.stderr], [0, ""]);
  const man = await run("man", ["--warnings", "-l", PAGE], {
    env: { MANWIDTH: "100", PATH: Deno.env.get("PATH")! },
  });
  assert.deepEqual([man.code, man.stderr], [0, ""]);
  assert.match(man.stdout, /^AEGISBPF\(1\)/);
});
