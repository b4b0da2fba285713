/**
 * Idle clients against a listener, as a local attacker would open them: `count` connections in all, at most
 * `parallel` open at once, each sending the start of a request head (every other one) or nothing, then
 * waiting until the server closes it or `holdMs` passes (a connect unanswered for 2 s counts as failed).
 * Stops opening after `totalMs`. Prints one JSON
 * line: how many connected, how many the server closed (and how many of those with an answer), how many
 * were still open at the end, how many connects failed, and the longest a connection stayed open.
 *   deno run --allow-net --allow-read --allow-write idle_clients.ts tcp:HOST:PORT|unix:PATH COUNT PARALLEL HOLD_MS TOTAL_MS
 */

const [target = "", count = "0", parallel = "0", holdMs = "0", totalMs = "0"] = Deno.args;
const PARTIAL = new TextEncoder().encode("GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");

const tally = {
  connected: 0,
  closedByServer: 0,
  answered: 0,
  stillOpen: 0,
  failed: 0,
  longestMs: 0,
  errors: {},
};
const errors: Record<string, number> = tally.errors;
const deadline = Date.now() + Number(totalMs);
/** A connect the kernel leaves unanswered (its listen queue full) this long counts as failed. */
const CONNECT_MS = 2000;

function connect(): Promise<Deno.Conn> {
  if (target.startsWith("unix:")) return Deno.connect({ transport: "unix", path: target.slice(5) });
  const [, hostname, port] = /^tcp:(.+):(\d+)$/.exec(target)!;
  return Deno.connect({ hostname: hostname!, port: Number(port) });
}

function connectWithin(ms: number): Promise<Deno.Conn> {
  return new Promise((resolve, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reject(new Error("TimedOut"));
    }, ms);
    connect().then((conn) => {
      clearTimeout(timer);
      if (late) conn.close();
      else resolve(conn);
    }, (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

async function one(index: number): Promise<void> {
  let conn: Deno.Conn;
  try {
    conn = await connectWithin(Math.min(Number(holdMs), CONNECT_MS));
  } catch (error) {
    tally.failed++;
    const name = (error as Error).message === "TimedOut" ? "TimedOut" : (error as Error).name;
    errors[name] = (errors[name] ?? 0) + 1;
    return;
  }
  tally.connected++;
  const opened = Date.now();
  if (index % 2 === 0) await conn.write(PARTIAL).catch(() => {});
  const timer = setTimeout(() => conn.close(), Math.max(0, Math.min(Number(holdMs), deadline - Date.now())));
  const buffer = new Uint8Array(4096);
  let got = 0;
  let closedByServer = false;
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) {
        closedByServer = true;
        break;
      }
      got += n;
    }
  } catch {
    // closed here at the hold's end (or reset by the server)
    closedByServer = Date.now() - opened < Number(holdMs) - 50;
  }
  clearTimeout(timer);
  if (closedByServer) {
    tally.closedByServer++;
    if (got > 0) tally.answered++;
  } else tally.stillOpen++;
  tally.longestMs = Math.max(tally.longestMs, Date.now() - opened);
  try {
    conn.close();
  } catch {
    // already closed
  }
}

let started = 0;
const running = new Set<Promise<void>>();
while (started < Number(count) && Date.now() < deadline) {
  const task: Promise<void> = one(started++).finally(() => running.delete(task));
  running.add(task);
  if (running.size >= Number(parallel)) await Promise.race(running);
}
await Promise.all(running);
console.log(JSON.stringify({ ...tally, started }));
Deno.exit(0); // connects still pending in the kernel are not waited for
