/**
 * `spec.checks`: the probes a policy carries as its own proof. After every change of the rules in force the
 * probes run (lib/ops/self_check.ts); a `mustWork` probe that fails, or a `mustDeny` probe that is not
 * refused, puts the previous policy back. Probes are part of the policy document, so a signed bundle signs
 * them too. Validated here with the rest of the schema (FILE:LINE:COL through parse.ts).
 */
import { z } from "zod";
import { hostProblem } from "./host_name.ts";
import { isIP } from "node:net";

/** A probe's timeout when it names none, and the longest it may name (ms). */
export const DEFAULT_PROBE_TIMEOUT_MS = 5_000;
export const MAX_PROBE_TIMEOUT_MS = 30_000;
/** The most probes one list holds, and the most arguments an exec probe passes. */
export const MAX_PROBES = 32;
export const MAX_PROBE_ARGS = 32;

const MAX_ID = 4294967294;
const id = z.int({ error: `ids are integers 0-${MAX_ID}` }).min(0, { error: `valid ids are 0-${MAX_ID}` })
  .max(MAX_ID, { error: `valid ids are 0-${MAX_ID}` });

const cleanPath = (what: string) =>
  z.string({ error: `${what} is an absolute path, e.g. /usr/bin/true` }).refine(
    (path) =>
      path.startsWith("/") && !path.includes("\0") && path.length <= 4096 &&
      path.split("/").every((part) => part !== "." && part !== ".."),
    { error: `${what} must be an absolute path without "." or ".." components, e.g. /usr/bin/true` },
  );

/** `HOST:PORT`, `[V6]:PORT`: the host and port, or a problem. */
export function parseHostPort(text: string): { host: string; port: number } | string {
  const match = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:\[\]]+):(\d{1,5})$/.exec(text);
  const example = "write HOST:PORT, e.g. 10.0.0.5:443, [2001:db8::1]:443 or db.internal:5432";
  if (!match) return `${JSON.stringify(text)} is not HOST:PORT; ${example}`;
  const host = match[1]!;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return `port ${port} is out of range; valid ports are 1-65535`;
  if (text.startsWith("[") && isIP(host) !== 6) return `${host} is not an IPv6 address; ${example}`;
  if (isIP(host) === 0) {
    const problem = hostProblem(host);
    if (problem) return problem;
  }
  return { host, port };
}

/** A probe's timeout: a duration such as 5s or 1500ms, at most MAX_PROBE_TIMEOUT_MS. */
export function parseProbeTimeout(text: string): number | string {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s)/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join("") !== text) {
    return `timeout ${JSON.stringify(text)} is not a duration: write for example 5s or 1500ms`;
  }
  const ms = parts.reduce((sum, part) => sum + Number(part[1]) * (part[2] === "s" ? 1000 : 1), 0);
  if (!(ms >= 100)) return "a probe's timeout is at least 100ms";
  if (ms > MAX_PROBE_TIMEOUT_MS) return `a probe's timeout is at most ${MAX_PROBE_TIMEOUT_MS / 1000}s`;
  return ms;
}

const ACTIONS = ["connect", "exec", "open", "resolve"] as const;
export type ProbeAction = typeof ACTIONS[number];

const probeObject = z.strictObject({
  connect: z.string({ error: "connect is HOST:PORT, e.g. 10.0.0.5:443" }).optional(),
  protocol: z.enum(["tcp", "udp"], { error: 'protocol is "tcp" or "udp"' }).optional(),
  exec: cleanPath("exec").optional(),
  args: z.array(
    z.string({ error: 'an argument is a string: quote it, e.g. "true" or "80"' }).refine(
      (arg) => !arg.includes("\0"),
      {
        error: "an argument holds no NUL",
      },
    ),
    { error: "args is a list of strings" },
  ).max(MAX_PROBE_ARGS, {
    error: `an exec probe passes at most ${MAX_PROBE_ARGS} arguments`,
  }).optional(),
  open: cleanPath("open").optional(),
  resolve: z.string({ error: "resolve is a host name, e.g. example.com" }).optional(),
  as: z.strictObject({ uid: id, gid: id.optional() }, {
    error: "as is { uid: N, gid: N }: who the probe runs as",
  }).optional(),
  in: cleanPath("in (a cgroup, relative to the cgroup v2 root)").optional(),
  timeout: z.string({ error: "timeout is a duration, e.g. 5s" }).optional(),
}, { error: "a probe is one of { connect: HOST:PORT }, { exec: PATH }, { open: PATH }, { resolve: NAME }" })
  .superRefine((probe, ctx) => {
    const actions = ACTIONS.filter((action) => probe[action] !== undefined);
    if (actions.length !== 1) {
      ctx.addIssue({
        code: "custom",
        input: probe,
        message: actions.length === 0
          ? "a probe names one action: connect: HOST:PORT, exec: PATH, open: PATH or resolve: NAME"
          : `a probe names one action, this one names ${actions.join(" and ")}: split it into probes`,
      });
    }
    if (probe.protocol !== undefined && probe.connect === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["protocol"],
        input: probe.protocol,
        message: "protocol goes with connect",
      });
    }
    if (probe.args !== undefined && probe.exec === undefined) {
      ctx.addIssue({ code: "custom", path: ["args"], input: probe.args, message: "args go with exec" });
    }
    if (probe.connect !== undefined) {
      const parsed = parseHostPort(probe.connect);
      if (typeof parsed === "string") {
        ctx.addIssue({ code: "custom", path: ["connect"], input: probe.connect, message: parsed });
      }
    }
    if (probe.resolve !== undefined) {
      const problem = isIP(probe.resolve) !== 0
        ? "resolve names a host name, not an address"
        : hostProblem(probe.resolve);
      if (problem) {
        ctx.addIssue({ code: "custom", path: ["resolve"], input: probe.resolve, message: problem });
      }
    }
    if (probe.timeout !== undefined) {
      const parsed = parseProbeTimeout(probe.timeout);
      if (typeof parsed === "string") {
        ctx.addIssue({ code: "custom", path: ["timeout"], input: probe.timeout, message: parsed });
      }
    }
  });

const probes = z.array(probeObject, { error: "expected a list of probes" }).max(MAX_PROBES, {
  error: `a list holds at most ${MAX_PROBES} probes`,
});

/** `spec.checks`. */
export const checksSchema = z.strictObject({
  mustWork: probes.optional(),
  mustDeny: probes.optional(),
  /** false: no implicit probes (SSH to this host's own port, `aegisbpf health`). */
  implicit: z.boolean({ error: "implicit is true or false" }).optional(),
}, { error: "checks is { mustWork: [PROBE...], mustDeny: [PROBE...], implicit: false }" });

export type ProbeSpec = z.output<typeof probeObject>;
export type ChecksSpec = z.output<typeof checksSchema>;
export type Expectation = "mustWork" | "mustDeny";

/** The action a (validated) probe names, and its target. */
export function probeAction(probe: ProbeSpec): { action: ProbeAction; target: string } {
  const action = ACTIONS.find((name) => probe[name] !== undefined)!;
  return { action, target: probe[action] as string };
}

/** `mustWork connect 10.0.0.5:443/tcp as 1000:1000`: how messages name a probe. */
export function describeProbe(expect: Expectation, probe: ProbeSpec): string {
  const { action, target } = probeAction(probe);
  const what = action === "connect"
    ? `${target}/${probe.protocol ?? "tcp"}`
    : action === "exec" && probe.args?.length
    ? `${target} ${probe.args.join(" ")}`
    : target;
  const who = probe.as ? ` as ${probe.as.uid}:${probe.as.gid ?? probe.as.uid}` : "";
  const where = probe.in ? ` in ${probe.in}` : "";
  return `${expect} ${action} ${what}${who}${where}`;
}
