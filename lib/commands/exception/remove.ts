import { defineCommand } from "../../cli/command.ts";
import { InputError } from "../../errors.ts";
import { removeExceptions } from "../../ops/exceptions.ts";

export const exceptionRemove = defineCommand({
  name: "remove",
  summary: "end an exception now (the policy's deny applies again at once), or clear expired ones",
  description:
    "Deletes exception ID from the kernel's maps (its match is denied again at once, where the policy " +
    "denies it) and from <state-dir>/exceptions.json, and records a history note. --expired removes every " +
    "exception that decides nothing any more (expired, or gone from the kernel).",
  options: {
    expired: { type: "boolean", description: "remove every expired (or gone) exception instead of one" },
    "no-wait": { type: "boolean", description: "fail at once when another command holds the state lock" },
  },
  args: [{
    name: "ID",
    optional: true,
    complete: "none",
    description: "the exception's number (exception list)",
  }],
  examples: ["aegisbpf exception remove 7", "aegisbpf exception remove --expired"],
  async run(ctx, { flags, args }) {
    const text = args.ID;
    if ((text === undefined) === (flags.expired !== true)) {
      throw new InputError("exception remove takes an ID or --expired (one of the two)");
    }
    if (text !== undefined && !/^\d{1,5}$/.test(text)) {
      throw new InputError(`ID ${JSON.stringify(text)}: not a number`);
    }
    const removed = await removeExceptions(
      ctx.globals,
      text !== undefined ? { id: Number(text) } : { expired: true },
      {
        uid: Deno.uid() ?? 0,
        wait: flags["no-wait"] !== true,
        timeoutMs: ctx.globals.lockTimeoutMs,
        onWait: (message) => ctx.log.info(message),
      },
    );
    ctx.stdout.line(
      removed.length === 0 ? "no exception removed" : `exception removed: ${removed.join(", ")}`,
    );
    return 0;
  },
});
