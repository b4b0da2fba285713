/**
 * The logged event a person points at with what `events` printed: its text line, or only the time it
 * starts with. The time names the event (the text line shows it to the millisecond); the type and rule on
 * the line, when there, narrow it down. `explain` then decides the JSON line the agent logged, which holds
 * every field, where the text line shows only some.
 */

import { InputError } from "../errors.ts";
import { readAgentState } from "../state/agent_state.ts";
import { eventLogPath, recentLines, rotatedPath } from "./event_log.ts";

/** The log `events` reads: the running (or last) agent's, else `<state-dir>/events.jsonl`. */
export function agentEventLog(stateDir: string): string {
  const agent = readAgentState(stateDir);
  const fromAgent = agent.state === "running" || agent.state === "died" ? agent.record.eventsLog : undefined;
  return fromAgent ?? eventLogPath(stateDir);
}

const TIME = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z$/;

export type LoggedEvent = { raw: string; where: string };

/** The JSON line of the event `text` names, from `log` and its rotated predecessor. */
export function findLoggedEvent(log: string, text: string, where: string): LoggedEvent {
  const words = text.trim().split(/\s+/);
  const time = TIME.exec(words[0] ?? "")?.[1];
  if (time === undefined) {
    throw new InputError(
      `${where}: not an event: give the JSON line (aegisbpf events --json), the line aegisbpf events ` +
        `prints, or the time it starts with (RFC 3339, e.g. 2026-11-23T10:00:00.123Z)`,
    );
  }
  const rule = words.find((word) => word.startsWith("rule="))?.slice("rule=".length);
  const found = recentLines(log, Number.MAX_SAFE_INTEGER).filter((line) => {
    if (!line.ok) return false;
    const { ts, type } = line.event;
    if (typeof ts !== "string" || !ts.startsWith(time)) return false;
    if (words.length > 1 && !words.slice(1).includes(String(type))) return false;
    return rule === undefined || line.event.rule === rule;
  });
  const first = found[0];
  if (first === undefined) {
    throw new InputError(
      `${where}: no event at ${words[0]} in ${log} or ${rotatedPath(log)}; it may have rotated away: ` +
        `pass its JSON line instead`,
    );
  }
  // Repeats within the same millisecond (a flood) are the same decision; different ones are ambiguous.
  const facts = (raw: string) => raw.replace(/"ts":"[^"]*"/, "");
  if (found.some((line) => facts(line.raw) !== facts(first.raw))) {
    throw new InputError(
      `${where}: ${found.length} different events at ${words[0]} (${
        found.map((line) => `${line.file}:${line.line}`).join(", ")
      }); pass the JSON line (aegisbpf events --json)`,
    );
  }
  return { raw: first.raw, where: `${first.file}:${first.line}` };
}
