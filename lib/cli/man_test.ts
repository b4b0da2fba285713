import assert from "node:assert/strict";
import { defineCommand } from "./command.ts";
import { escape, manPage } from "./man.ts";

Deno.test("escape() keeps backslashes and hyphens literal and never starts a line with a request", () => {
  assert.equal(escape("--state-dir C:\\x"), "\\-\\-state\\-dir C:\\ex");
  assert.equal(escape(".hidden\n'quoted\nplain"), "\\&.hidden\n\\&'quoted\nplain");
});

Deno.test("manPage() gives each command its usage heading, arguments, flags and examples", () => {
  const probe = defineCommand({
    name: "probe",
    summary: "probe things",
    description: "First paragraph\nwrapped.\n\nSecond paragraph.",
    options: {
      out: { type: "string", valueName: "FILE", description: "where to write", required: true },
      all: { type: "boolean", short: "a", description: "every thing", multiple: true },
    },
    args: [{ name: "WHAT", description: "the thing", choices: ["x", "y"] }],
    examples: ["aegisbpf probe x --out -"],
    run: () => Promise.resolve(0),
  });
  const page = manPage([{ name: "group", summary: "a group", commands: [probe] }], { version: "9.9" });
  assert.match(page, /^\.TH AEGISBPF 1 "" "aegisbpf 9\.9" "User Commands"$/m);
  const section = page.slice(page.indexOf(".SS"), page.indexOf(".SH GLOBAL FLAGS"));
  assert.equal(
    section,
    [
      '.SS "aegisbpf group probe x|y \\-\\-out FILE [flags]"',
      "First paragraph wrapped.",
      ".PP",
      "Second paragraph.",
      ".PP",
      "Arguments:",
      ".TP",
      "\\fIWHAT\\fR",
      "the thing (x, y)",
      ".PP",
      "Flags:",
      ".TP",
      "\\fB\\-\\-out\\fR \\fIFILE\\fR",
      "where to write",
      ".TP",
      "\\fB\\-a\\fR, \\fB\\-\\-all\\fR",
      "every thing (repeatable)",
      ".PP",
      "Examples:",
      ".RS",
      ".nf",
      "aegisbpf probe x \\-\\-out \\-",
      ".fi",
      ".RE",
      "",
    ].join("\n"),
  );
});
