import { defineCommand } from "../../cli/command.ts";
import { readApplied, storedPolicy } from "../../state/apply_state.ts";
import { currentEntry, listHistory } from "../../state/history.ts";

export const policyShow = defineCommand({
  name: "show",
  summary: "print the applied policy: its history entry, then its text",
  description: "Prints the history entry of the policy in force (seq, time, name, version, sha256, source, " +
    "signer, generation) and the policy text as it was applied (a bundle's payload). Reads the state " +
    "directory only. An apply interrupted by a kill shows as pending until the next apply or rollback settles it.",
  options: {
    json: { type: "boolean", description: "print one JSON object: the entry and the policy text" },
  },
  args: [],
  examples: ["aegisbpf policy show", "aegisbpf policy show --json"],
  run(ctx, { flags }) {
    const { stateDir } = ctx.globals;
    const entries = listHistory(stateDir);
    const entry = currentEntry(entries);
    const pending = entries.filter((e) => e.outcome === "pending").map((e) => e.seq);
    if (pending.length > 0) {
      ctx.log.warn(
        `history entry ${pending.join(", ")} is pending: an apply was interrupted; ` +
          `the next apply or rollback settles it`,
      );
    }
    if (entry === undefined) {
      if (flags.json) ctx.stdout.line(JSON.stringify({ applied: null }));
      else ctx.log.info("no policy applied yet; apply one with aegisbpf policy apply FILE");
      return Promise.resolve(0);
    }
    const { policyText } = storedPolicy(stateDir, entry);
    const record = readApplied(stateDir);
    const generation = record?.seq === entry.seq ? record.generation : undefined;
    if (flags.json) {
      ctx.stdout.line(
        JSON.stringify({
          applied: { ...entry, ...(generation === undefined ? {} : { generation }) },
          policy: policyText,
        }),
      );
      return Promise.resolve(0);
    }
    const fields: [string, string | number | undefined][] = [
      ["seq", entry.seq],
      ["time", entry.time],
      ["outcome", entry.outcome],
      ["name", entry.name],
      ["version", entry.version],
      ["sha256", entry.sha256],
      ["source", entry.source],
      ["kind", entry.kind],
      ["signer", entry.keyid],
      ["restored", entry.restoredSeq],
      ["generation", generation],
    ];
    for (const [key, value] of fields) if (value !== undefined) ctx.stdout.line(`# ${key}: ${value}`);
    ctx.stdout.write(policyText.endsWith("\n") ? policyText : `${policyText}\n`);
    return Promise.resolve(0);
  },
});
