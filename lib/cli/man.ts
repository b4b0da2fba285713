/**
 * The manual page aegisbpf(1), generated from the registry like `--help` and the completions: every command
 * with its arguments, flags and examples, then the global flags, exit codes, environment and files.
 * `deno task man` writes it to docs/aegisbpf.1; a test fails when the committed page drifts from this.
 */

import { allCommands, type Registry } from "./command.ts";
import type { OptionSpecs } from "./specs.ts";
import { EXIT } from "./exit.ts";
import { DIRECTORIES, GLOBAL_OPTIONS, HELP_OPTION } from "./globals.ts";
import { ABOUT, argDescription, flagLabel, usageLine } from "./help.ts";

/** What each exit code means; a new code in EXIT needs its line here. */
const EXIT_MEANINGS: Record<keyof typeof EXIT, string> = {
  ok: "success; for health, the agent is healthy",
  failure: "a runtime failure or a failed check",
  input: "usage error or invalid input: a bad flag, an invalid policy (the message names FILE:LINE:COL), " +
    "a bad bundle, signature or key",
  refused: "refused for safety: a lock-out risk, a replayed or expired bundle, unsigned policy where " +
    "signatures are required, --enforce on a kernel that cannot enforce an area the policy uses; the " +
    "message says which check and why",
};

const ENVIRONMENT: readonly [string, string][] = [
  ...Object.values(DIRECTORIES).map(({ flag, env, fallback }): [string, string] => [
    env,
    `the default of --${flag} (${fallback}); the flag wins over it`,
  ]),
  ["AEGISBPF_PROC_CMDLINE", "a file read instead of /proc/cmdline for aegisbpf.break_glass=1 (tests)"],
  ["SSH_CONNECTION", "the SSH connection lint and apply keep open (no ingress rule may drop it)"],
  ["NO_COLOR", "set to anything but the empty string: no colour in the output"],
  ["FORCE_COLOR", "colour even when the output is not a terminal"],
];

const FILES: readonly [string, string][] = [
  ["/etc/aegisbpf/policy.yaml", "the policy run applies at start and on SIGHUP"],
  [
    "/etc/aegisbpf/config.yaml",
    "settings: requireSignature: true refuses unsigned policy; exceptionMaxTtl: 14d raises the longest exception TTL",
  ],
  ["/etc/aegisbpf/keys/", "public keys trusted for signed bundles"],
  ["/etc/aegisbpf/break_glass", "the break-glass marker: a running agent forces audit while it exists"],
  [
    "/var/lib/aegisbpf/",
    "history of applied policies and its notes, the anti-rollback counter, agent.json, events.jsonl, exceptions.json",
  ],
  ["/sys/fs/bpf/aegisbpf/", "the pinned maps, programs and links that keep enforcing without the agent"],
  ["/run/aegisbpf/api.sock", "the local API of run (mode 0600)"],
  ["/etc/default/aegisbpf", "settings of the systemd unit aegisbpf.service"],
];

const SEE_ALSO = "The policy reference, the API reference, the event format and the runbooks are in " +
  "/usr/share/doc/aegisbpf/ (docs/ in the source tree): policy.md, api.md, events.md, runbooks/.";

export type ManOptions = { version: string };

/** The page in man(7) macros. */
export function manPage(registry: Registry, { version }: ManOptions): string {
  const lines: string[] = [
    `.TH AEGISBPF 1 "" "aegisbpf ${escape(version)}" "User Commands"`,
    ".SH NAME",
    "aegisbpf \\- Linux host security agent enforcing a host policy with eBPF",
    ".SH SYNOPSIS",
    ".B aegisbpf",
    ".I command",
    "[\\fIflags\\fR]",
    ".SH DESCRIPTION",
    escape(ABOUT),
    ".PP",
    escape(
      "One binary is both the agent (run) and the operator's toolkit. Every command takes --help; " +
        "the global flags may come before or after the command.",
    ),
    ".SH COMMANDS",
    ...allCommands(registry).flatMap(({ path, command }) => [
      `.SS ${quote(usageLine(path, command))}`,
      ...paragraphs(command.description ?? command.summary),
      ...(command.args.length > 0
        ? [
          ".PP",
          "Arguments:",
          ...command.args.flatMap((arg) => item(`\\fI${escape(arg.name)}\\fR`, argDescription(arg))),
        ]
        : []),
      ...(Object.keys(command.options).length > 0 ? [".PP", "Flags:", ...optionItems(command.options)] : []),
      ...(command.examples && command.examples.length > 0
        ? [".PP", "Examples:", ".RS", ".nf", ...command.examples.map(escape), ".fi", ".RE"]
        : []),
    ]),
    ".SH GLOBAL FLAGS",
    ...optionItems({ ...GLOBAL_OPTIONS, ...HELP_OPTION }),
    ".SH EXIT STATUS",
    ...Object.entries(EXIT).flatMap(([name, code]) =>
      item(`\\fB${code}\\fR`, EXIT_MEANINGS[name as keyof typeof EXIT])
    ),
    ".SH ENVIRONMENT",
    ...ENVIRONMENT.flatMap(([name, what]) => item(`\\fB${name}\\fR`, what)),
    ".SH FILES",
    ...FILES.flatMap(([path, what]) => item(`\\fI${escape(path)}\\fR`, what)),
    ".SH SEE ALSO",
    escape(SEE_ALSO),
  ];
  return `${lines.join("\n")}\n`;
}

function optionItems(options: OptionSpecs): string[] {
  return Object.entries(options).flatMap(([name, spec]) => {
    const [flag, value] = flagLabel(name, spec).split(" ");
    const tag = [
      spec.short ? `\\fB\\-${spec.short}\\fR, ` : "",
      `\\fB${escape(flag!)}\\fR`,
      value ? ` \\fI${escape(value)}\\fR` : "",
    ].join("");
    return item(tag, `${spec.description}${spec.multiple ? " (repeatable)" : ""}`);
  });
}

/** A tagged paragraph: `tag` is already roff, `text` is plain. */
function item(tag: string, text: string): string[] {
  return [".TP", tag, escape(text)];
}

function paragraphs(text: string): string[] {
  return text.split(/\n\s*\n/).flatMap((part, index) => [
    ...(index > 0 ? [".PP"] : []),
    escape(part.replace(/\s*\n\s*/g, " ")),
  ]);
}

/** Plain text as roff: backslashes and hyphens escaped, no line taken for a request. */
export function escape(text: string): string {
  return text.split("\n").map((line) =>
    line.replaceAll("\\", "\\e").replaceAll("-", "\\-").replace(/^([.'])/, "\\&$1")
  ).join("\n");
}

/** A macro argument: quoted, with quotes inside doubled. */
function quote(text: string): string {
  return `"${escape(text).replaceAll('"', '""')}"`;
}
