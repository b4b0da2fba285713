import { defineCommand } from "../../cli/command.ts";
import { type ExceptionView, listExceptions } from "../../ops/exceptions.ts";
import { printable } from "../../text/printable.ts";

/** One exception on one line: id, state, match, scope, expiry, reason, ticket. */
export function exceptionLine(view: ExceptionView): string {
  const left = view.remainingSeconds !== undefined ? ` (${view.remainingSeconds}s left)` : "";
  return [
    `${view.id}`,
    view.state,
    printable(view.allow ?? `${view.kind}:(no record)`),
    view.in !== undefined ? `in ${printable(view.in)}` : undefined,
    view.expires !== undefined ? `until ${view.expires}${left}` : undefined,
    view.reason !== undefined ? `reason: ${printable(view.reason)}` : undefined,
    view.ticket !== undefined ? `ticket: ${printable(view.ticket)}` : undefined,
  ].filter((part) => part !== undefined).join("  ");
}

export const exceptionList = defineCommand({
  name: "list",
  summary: "the expiring exceptions: active, expired, and those the kernel no longer holds",
  description:
    "Reads <state-dir>/exceptions.json and the pinned exception maps (no lock, nothing loaded). States: " +
    "active (the kernel lets its match through), expired (past its deadline: it decides nothing), gone (the " +
    "kernel no longer holds it: a reboot or a detach), unnamed (in the kernel with no record: a command killed " +
    "between its two writes; remove it by its id). Expired and gone exceptions stay listed until exception " +
    "remove ID or exception remove --expired.",
  options: { json: { type: "boolean", description: "print one JSON array" } },
  args: [],
  examples: ["aegisbpf exception list", "aegisbpf exception list --json"],
  run(ctx, { flags }) {
    const views = listExceptions(ctx.globals);
    if (flags.json) ctx.stdout.line(JSON.stringify(views));
    else if (views.length === 0) ctx.stdout.line("no exceptions");
    else for (const view of views) ctx.stdout.line(exceptionLine(view));
    return Promise.resolve(0);
  },
});
