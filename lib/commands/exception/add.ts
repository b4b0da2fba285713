import { defineCommand } from "../../cli/command.ts";
import { addException } from "../../ops/exceptions.ts";
import { exceptionLine } from "./list.ts";

export const exceptionAdd = defineCommand({
  name: "add",
  summary: "a temporary allow that beats the policy's deny for one match, expiring in the kernel",
  description:
    "Lets one exec, file or egress destination through that the policy denies (exec.deny, exec.default " +
    "deny, a sha256 mismatch; file.deny and files.protect, open, change and write alike; egress deny and default " +
    "deny for connect and UDP sendmsg), in every mode, for --ttl. The kernel keeps the deadline: the exception " +
    "stops deciding at its expiry with or without an agent, and a policy apply, rollback or refresh neither drops " +
    "nor extends it. A path is resolved to its inode now, as file rules are: a file later renamed over it is not " +
    "excepted. --ttl is at most 7d unless exceptionMaxTtl in <config-dir>/config.yaml says otherwise (at most " +
    "90d). Every event it lets through names it (exception: ID, decision audit). Recorded in " +
    "<state-dir>/exceptions.json and as a history note. Exits 2 on bad input (nothing written), 3 when no data " +
    "plane is pinned.",
  options: {
    allow: {
      type: "string",
      valueName: "MATCH",
      required: true,
      description:
        "exec:PATH, file:PATH or egress:CIDR[:PORT] (IPv6 with a port: egress:[2001:db8::/32]:443)",
    },
    in: {
      type: "string",
      valueName: "CGROUP",
      description: "only for tasks in this cgroup (below the v2 root) and below",
    },
    ttl: {
      type: "string",
      valueName: "DUR",
      required: true,
      description: "how long, e.g. 30s, 2h, 1d (at most 7d by default)",
    },
    reason: {
      type: "string",
      valueName: "TEXT",
      required: true,
      description: "why, for the record (200 characters at most)",
    },
    ticket: { type: "string", valueName: "ID", description: "the change or incident ticket" },
    json: { type: "boolean", description: "print the exception as one JSON object" },
    "no-wait": { type: "boolean", description: "fail at once when another command holds the state lock" },
  },
  args: [],
  examples: [
    "aegisbpf exception add --allow exec:/usr/local/bin/migrate --ttl 2h --reason 'schema migration' --ticket CHG-1234",
    "aegisbpf exception add --allow egress:203.0.113.7:443 --in system.slice/deploy.service --ttl 30m --reason 'vendor hotfix download'",
  ],
  async run(ctx, { flags }) {
    const view = await addException(
      ctx.globals,
      {
        allow: flags.allow,
        ttl: flags.ttl,
        reason: flags.reason,
        ...(flags.in !== undefined ? { in: flags.in } : {}),
        ...(flags.ticket !== undefined ? { ticket: flags.ticket } : {}),
      },
      {
        uid: Deno.uid() ?? 0,
        wait: flags["no-wait"] !== true,
        timeoutMs: ctx.globals.lockTimeoutMs,
        onWait: (message) => ctx.log.info(message),
      },
    );
    ctx.stdout.line(flags.json ? JSON.stringify(view) : `exception added: ${exceptionLine(view)}`);
    return 0;
  },
});
