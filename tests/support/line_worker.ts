/**
 * A native test worker spoken to in lines: started with its arguments, it prints "ready", then answers
 * each line written to its stdin with one line. The socket, packet and route workers wrap one.
 */
import { lines } from "./lines.ts";

export class LineWorker {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;
  readonly #stderr: Promise<string>;
  readonly #name: string;

  private constructor(name: string, child: Deno.ChildProcess) {
    this.#name = name;
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#lines = lines(child.stdout)[Symbol.asyncIterator]();
    this.#stderr = new Response(child.stderr).text();
  }

  /** Starts `binary` with `args` and waits for its "ready"; `name` ("socket worker") is for errors. */
  static async start(name: string, binary: string, args: string[]): Promise<LineWorker> {
    const child = new Deno.Command(binary, { args, stdin: "piped", stdout: "piped", stderr: "piped" })
      .spawn();
    const worker = new LineWorker(name, child);
    const first = await worker.#lines.next();
    if (first.done || first.value !== "ready") {
      const stderr = await worker.close();
      throw new Error(`${name} did not start: ${stderr.trim() || first.value}`);
    }
    return worker;
  }

  /** Writes `text` (one or more lines, each ending in a newline) without waiting for the answers. */
  write(text: string): Promise<void> {
    return this.#writer.write(new TextEncoder().encode(text));
  }

  /** The next line the worker printed; throws with its stderr when it exited instead. */
  async next(): Promise<string> {
    const next = await this.#lines.next();
    if (next.done) throw new Error(`${this.#name} exited: ${(await this.close()).trim()}`);
    return next.value;
  }

  /** Writes one line and returns the worker's answer. */
  async ask(line: string): Promise<string> {
    await this.write(`${line}\n`);
    return await this.next();
  }

  /** Ends the worker (closing its stdin) and returns what it wrote to stderr. */
  async close(): Promise<string> {
    try {
      await this.#writer.close();
    } catch {
      // already closed or the worker is gone
    }
    const status = await this.#child.status;
    const stderr = await this.#stderr;
    return status.success ? stderr : `${stderr} (exit ${status.code})`;
  }
}
