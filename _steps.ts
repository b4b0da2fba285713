import { runbookSteps } from "./tests/packaging/runbook_steps.ts";
for (const f of Deno.args) for (const s of runbookSteps(Deno.readTextFileSync(`docs/runbooks/${f}`))) console.log(f, JSON.stringify(s).slice(0, 160));
