import { agentEventLog } from "../agent/event_lookup.ts";
import { followLines, type LogLine, readRecent } from "../agent/event_log.ts";
import { eventLine } from "../agent/event_text.ts";
import { ocsfEvent } from "../agent/event_ocsf.ts";
import { defineCommand } from "../cli/command.ts";
import { palette } from "../text/palette.ts";
import { escapeJson, jsonText } from "../text/printable.ts";
import { InputError } from "../errors.ts";
import { exists } from "../kernel/pin_dir.ts";

/** Malformed lines reported one by one before the rest are only counted. */
const MALFORMED_SHOWN = 10;

export const events = defineCommand({
  name: "events",
  summary: "recent events from the agent log, then live ones with --follow",
  description: "Reads the event log a running agent appends to (<state-dir>/events.jsonl, and " +
    "events.jsonl.1 it rotates to at 8 MiB): the last N events, oldest first, as aligned text lines or, " +
    "with --json, the JSON lines as written (docs/events.md), or with --ocsf, each as an OCSF 1.3 event (one " +
    "JSON object a line: docs/events.md says which class each type maps to). --follow then prints new events as they " +
    "come, across rotations, until interrupted (Ctrl-C or SIGTERM). A line that is not an event is " +
    "reported once on stderr as FILE:LINE and skipped.",
  options: {
    follow: { type: "boolean", short: "f", description: "keep printing new events until interrupted" },
    json: { type: "boolean", description: "print the JSON lines as the agent wrote them" },
    ocsf: { type: "boolean", description: "print each event as an OCSF 1.3 JSON object, one a line" },
    lines: {
      type: "string",
      short: "n",
      valueName: "N",
      default: "50",
      description: "how many recent events to print first (default 50; 0 for none)",
    },
  },
  args: [],
  examples: [
    "aegisbpf events",
    "aegisbpf events -n 200 --json",
    "aegisbpf events --follow",
    "aegisbpf events --ocsf --follow",
  ],
  async run(ctx, { flags }) {
    if (!/^\d+$/.test(flags.lines)) {
      throw new InputError(`--lines "${flags.lines}" is not a whole number of events; e.g. --lines 100`);
    }
    if (flags.json && flags.ocsf) throw new InputError("--json and --ocsf exclude each other: pick one");
    const count = Number(flags.lines);
    const path = agentEventLog(ctx.globals.stateDir);
    const style = palette(ctx.color);
    let malformed = 0;
    const print = (line: LogLine) => {
      if (!line.ok) {
        malformed += 1;
        if (malformed <= MALFORMED_SHOWN) {
          ctx.log.warn(`${line.file}:${line.line}: ${line.why}; line skipped`);
        }
        return;
      }
      if (!flags.ocsf) {
        ctx.stdout.line(flags.json ? escapeJson(line.raw) : eventLine(line.event, style));
        return;
      }
      let ocsf;
      try {
        ocsf = ocsfEvent(line.event);
      } catch {
        // A line of a known type whose fields are not what the type carries (a hand-edited or foreign log).
        return print({
          ...line,
          ok: false,
          why: `its fields are not those of a ${jsonText(line.event.type)} event`,
        });
      }
      if (ocsf === undefined) {
        return print({ ...line, ok: false, why: `type ${jsonText(line.event.type)} has no OCSF class here` });
      }
      ctx.stdout.line(jsonText(ocsf));
    };
    const { lines: recent, end } = readRecent(path, count);
    recent.forEach(print);
    const reportSkipped = () => {
      if (malformed > MALFORMED_SHOWN) {
        ctx.log.warn(`${malformed - MALFORMED_SHOWN} more malformed lines skipped`);
        malformed = MALFORMED_SHOWN;
      }
    };
    reportSkipped();
    if (!flags.follow) {
      if (recent.length === 0 && count > 0 && !exists(path)) {
        ctx.log.info(`no events yet: ${path} does not exist; a running agent (aegisbpf run) writes it`);
      }
      return 0;
    }
    const stop = new AbortController();
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    const onSignal = () => stop.abort();
    for (const signal of signals) Deno.addSignalListener(signal, onSignal);
    try {
      if (!exists(path)) ctx.log.info(`waiting for ${path}: a running agent (aegisbpf run) writes it`);
      await followLines(path, (line) => {
        print(line);
        reportSkipped();
      }, { signal: stop.signal, from: end });
    } finally {
      for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
    }
    return 0;
  },
});
