/**
 * Flags every command accepts, before or after the command, with their environment variables and the
 * defaults of SPEC section 9. The directory flags let tests run without touching the real system paths.
 */

import { resolve } from "node:path";
import { DEFAULT_LOCK_TIMEOUT_MS } from "../state/files.ts";
import type { OptionSpecs } from "./specs.ts";
import { parseDuration } from "../text/duration.ts";

export const LOG_FORMATS = ["text", "json", "ocsf"] as const;
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

export type LogFormat = (typeof LOG_FORMATS)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];

export type Globals = {
  logFormat: LogFormat;
  logLevel: LogLevel;
  /** The bpffs mount; pins live under `<bpffs>/aegisbpf/`. */
  bpffs: string;
  /** History, version counter and other state. */
  stateDir: string;
  /** `policy.yaml`, `config.yaml`, `keys/`, the break-glass marker. */
  configDir: string;
  /** `--lock-timeout`: the longest wait for the state lock, in milliseconds. */
  lockTimeoutMs: number;
};

export const GLOBAL_OPTIONS = {
  "log-format": {
    type: "string",
    valueName: "FORMAT",
    choices: LOG_FORMATS,
    description: "text, json or ocsf: how logs, errors and run events are printed (default text; ocsf: " +
      "OCSF 1.3 events, json logs)",
  },
  "log-level": {
    type: "string",
    valueName: "LEVEL",
    choices: LOG_LEVELS,
    description: "debug, info, warn or error (default info); debug adds stack traces",
  },
  bpffs: {
    type: "string",
    valueName: "DIR",
    complete: "directory",
    description: "bpffs holding the pins (env AEGISBPF_BPFFS, default /sys/fs/bpf)",
  },
  "state-dir": {
    type: "string",
    valueName: "DIR",
    complete: "directory",
    description: "history, version counter (env AEGISBPF_STATE_DIR, default /var/lib/aegisbpf)",
  },
  "config-dir": {
    type: "string",
    valueName: "DIR",
    complete: "directory",
    description: "policy, config, trusted keys (env AEGISBPF_CONFIG_DIR, default /etc/aegisbpf)",
  },
  "lock-timeout": {
    type: "string",
    valueName: "DUR",
    description: "longest wait for the state lock held by another command, e.g. 5m (default 60s)",
  },
} as const satisfies OptionSpecs;

/** `--help`, accepted by every command and group but not shown among a command's own flags. */
export const HELP_OPTION = {
  help: { type: "boolean", short: "h", description: "show this help" },
} as const satisfies OptionSpecs;

type Directory = { flag: "bpffs" | "state-dir" | "config-dir"; env: string; fallback: string };

/** The directory flags with their environment variables and defaults. */
export const DIRECTORIES = {
  bpffs: { flag: "bpffs", env: "AEGISBPF_BPFFS", fallback: "/sys/fs/bpf" },
  stateDir: { flag: "state-dir", env: "AEGISBPF_STATE_DIR", fallback: "/var/lib/aegisbpf" },
  configDir: { flag: "config-dir", env: "AEGISBPF_CONFIG_DIR", fallback: "/etc/aegisbpf" },
} as const satisfies Record<string, Directory>;

/** The flag values parsed for the global options; absent when not given. */
export type GlobalFlags = { -readonly [K in keyof typeof GLOBAL_OPTIONS]?: string };

/** A flag wins over its environment variable, which wins over the default. Paths come out absolute. */
export function resolveGlobals(flags: GlobalFlags, env: (name: string) => string | undefined): Globals {
  const directory = ({ flag, env: name, fallback }: Directory) =>
    resolve(nonEmpty(flags[flag]) ?? nonEmpty(env(name)) ?? fallback);
  return {
    logFormat: (flags["log-format"] as LogFormat | undefined) ?? "text",
    logLevel: (flags["log-level"] as LogLevel | undefined) ?? "info",
    bpffs: directory(DIRECTORIES.bpffs),
    stateDir: directory(DIRECTORIES.stateDir),
    configDir: directory(DIRECTORIES.configDir),
    lockTimeoutMs: flags["lock-timeout"] === undefined
      ? DEFAULT_LOCK_TIMEOUT_MS
      : parseDuration(flags["lock-timeout"], "--lock-timeout"),
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === "" ? undefined : value;
}
