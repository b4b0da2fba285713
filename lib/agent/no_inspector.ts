/**
 * Imported first by main.ts, so that it runs before any other module of the program is evaluated: when the
 * process is aegisbpf itself (not a test importing main.ts), SIGUSR1 is ignored from here on and the
 * runtime's inspector cannot be opened with it (process_guard.ts says how).
 */
import { disarmInspector } from "./process_guard.ts";

if (Deno.mainModule === new URL("../../main.ts", import.meta.url).href) disarmInspector();
