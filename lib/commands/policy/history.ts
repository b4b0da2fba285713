import { defineCommand } from "../../cli/command.ts";
import { table } from "../../cli/output.ts";
import { palette } from "../../text/palette.ts";
import { listHistory } from "../../state/history.ts";
import { readHistoryNotes } from "../../state/exceptions.ts";
import { printable } from "../../text/printable.ts";

export const policyHistory = defineCommand({
  name: "history",
  summary: "list the policies applied, newest last",
  description: "Lists the history in <state-dir>/history/: every apply and rollback with its outcome " +
    "(applied, rolled-back, failed, check-failed when its self-check failed and the previous policy was " +
    "put back, pending while an apply runs or after one was killed), policy name, version, sha256 prefix, " +
    "source and signer; an entry's note (the probe that failed) follows on its own line. At least the last " +
    "20 entries are kept. --notes lists the history notes instead: changes to what is enforced that are not " +
    "a policy (expiring exceptions added and removed), from <state-dir>/history/notes.jsonl, oldest first.",
  options: {
    json: { type: "boolean", description: "print one JSON array of entries" },
    notes: { type: "boolean", description: "list the history notes (exceptions added and removed) instead" },
  },
  args: [],
  examples: ["aegisbpf policy history", "aegisbpf policy history --json", "aegisbpf policy history --notes"],
  run(ctx, { flags }) {
    if (flags.notes) {
      const notes = readHistoryNotes(ctx.globals.stateDir);
      if (flags.json) ctx.stdout.line(JSON.stringify(notes));
      else if (notes.length === 0) ctx.log.info("no history notes yet");
      else {
        for (const note of notes) {
          ctx.stdout.line(printable(
            `${note.time}  ${note.note} ${note.exception}  ${note.allow}  uid ${note.uid}` +
              `${note.expires ? `  until ${note.expires}` : ""}${
                note.reason ? `  reason: ${note.reason}` : ""
              }` +
              `${note.ticket ? `  ticket: ${note.ticket}` : ""}`,
          ));
        }
      }
      return Promise.resolve(0);
    }
    const entries = listHistory(ctx.globals.stateDir);
    if (flags.json) {
      ctx.stdout.line(JSON.stringify(entries));
      return Promise.resolve(0);
    }
    if (entries.length === 0) {
      ctx.log.info("no history yet; apply a policy with aegisbpf policy apply FILE");
      return Promise.resolve(0);
    }
    const style = palette(ctx.color);
    const header = ["SEQ", "TIME", "OUTCOME", "NAME", "VERSION", "SHA256", "SOURCE", "SIGNER"].map(
      style.bold,
    );
    const rows = entries.map((entry) => [
      String(entry.seq),
      entry.time.replace(/\.\d+Z$/, "Z"),
      entry.restoredSeq === undefined ? entry.outcome : `${entry.outcome} (to ${entry.restoredSeq})`,
      entry.name,
      String(entry.version),
      entry.sha256.slice(0, 12),
      entry.source,
      entry.keyid?.slice(0, 16) ?? "-",
    ]);
    for (const line of table([header, ...rows])) ctx.stdout.line(line.trimEnd());
    for (const entry of entries) {
      if (entry.note !== undefined) ctx.stdout.line(`note ${entry.seq}: ${entry.note}`);
    }
    return Promise.resolve(0);
  },
});
