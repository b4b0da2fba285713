import assert from "node:assert/strict";
import { scratch } from "./cli.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

const event = (n: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    ts: `2026-11-23T10:00:0${n % 10}.123456789Z`,
    host: "h",
    type: "net.bind",
    decision: "deny",
    mode: "enforce",
    rule: `r${n}`,
    process: { pid: 100 + n, ppid: 1, uid: 0, gid: 0, comm: "nc", cgroup: { id: 1, path: "/" } },
    net: { family: "ipv4", protocol: "tcp", sport: 6667 },
    count: 1,
    ...extra,
  });

Deno.test("events prints the last N events of both log files, oldest first, as aligned text", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.stateDir}/events.jsonl.1`, [1, 2].map((n) => event(n)).join("\n") + "\n");
  await Deno.writeTextFile(`${s.stateDir}/events.jsonl`, [3, 4].map((n) => event(n)).join("\n") + "\n");
  const all = await s.run(["events"]);
  assert.equal(all.code, 0, all.stderr);
  assert.equal(all.stderr, "");
  const lines = all.stdout.trimEnd().split("\n");
  assert.deepEqual(lines.map((line) => /rule=(r\d)/.exec(line)?.[1]), ["r1", "r2", "r3", "r4"]);
  assert.equal(
    lines[0],
    "2026-11-23T10:00:01.123Z  deny   net.bind      rule=r1               nc[101] uid=0  tcp :6667",
  );
  const two = await s.run(["events", "-n", "2", "--json"]);
  assert.equal(two.code, 0);
  assert.deepEqual(two.stdout.trimEnd().split("\n"), [event(3), event(4)], "the lines as written");
});

Deno.test("events reports a malformed line once with FILE:LINE and goes on", async () => {
  await using s = await scratch();
  const log = `${s.stateDir}/events.jsonl`;
  await Deno.writeTextFile(log, `${event(1)}\n{"half":\n${event(2)}\n`);
  const result = await s.run(["events", "--json"]);
  assert.equal(result.code, 0);
  assert.deepEqual(result.stdout.trimEnd().split("\n"), [event(1), event(2)]);
  assert.equal(result.stderr, `aegisbpf: warn: ${log}:2: not JSON; line skipped\n`);
});

Deno.test("events --ocsf prints each event as one OCSF object; a type with no class is skipped with FILE:LINE", async () => {
  await using s = await scratch();
  const log = `${s.stateDir}/events.jsonl`;
  // A comm that tries to end the line and start a field of its own.
  const hostile = event(2, {
    process: { pid: 7, ppid: 1, uid: 0, gid: 0, comm: 'nc"\n{"x":1', cgroup: { id: 1 } },
  });
  const future = JSON.stringify({
    ts: "2026-11-23T10:00:03Z",
    host: "h",
    type: "future.kind",
    mode: "audit",
  });
  // A known type whose fields are not that type's (a hand-edited or foreign log): skipped, never a crash.
  const broken = JSON.stringify({ ...JSON.parse(event(3)), process: null });
  await Deno.writeTextFile(log, `${event(1)}\n${hostile}\n${future}\n${broken}\n`);
  const result = await s.run(["events", "--ocsf"]);
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 2);
  const [first, second] = lines.map((line) => JSON.parse(line));
  assert.equal(first.class_uid, 4001);
  assert.equal(first.activity_id, 7);
  assert.equal(first.disposition_id, 2);
  assert.equal(first.unmapped.rule.id, "r1");
  assert.equal(second.actor.process.name, 'nc"\n{"x":1');
  assert.equal(
    result.stderr,
    `aegisbpf: warn: ${log}:3: type "future.kind" has no OCSF class here; line skipped\n` +
      `aegisbpf: warn: ${log}:4: its fields are not those of a "net.bind" event; line skipped\n`,
  );
  const both = await s.run(["events", "--json", "--ocsf"]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--json and --ocsf exclude each other/);
});

Deno.test("events with no log says where it looks; a bad --lines or flag exits 2", async () => {
  await using s = await scratch();
  const none = await s.run(["events"]);
  assert.equal(none.code, 0);
  assert.equal(none.stdout, "");
  assert.match(
    none.stderr,
    /no events yet: .*\/state\/events\.jsonl does not exist; a running agent \(aegisbpf run\) writes it/,
  );
  const bad = await s.run(["events", "-n", "ten"]);
  assert.equal(bad.code, 2);
  assert.equal(
    bad.stderr,
    'aegisbpf: error: --lines "ten" is not a whole number of events; e.g. --lines 100\n',
  );
  assert.equal((await s.run(["events", "-n", "-3"])).code, 2);
  const flag = await s.run(["events", "--tail"]);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /unknown flag --tail for "events"/);
});

Deno.test("events --follow streams new events across a rotation and stops cleanly on SIGTERM", async () => {
  await using s = await scratch();
  const log = `${s.stateDir}/events.jsonl`;
  await Deno.writeTextFile(log, `${event(1)}\n`);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, "events", "--follow", "--json", "-n", "1"],
    env: {
      AEGISBPF_STATE_DIR: s.stateDir,
      AEGISBPF_CONFIG_DIR: s.configDir,
      AEGISBPF_BPFFS: `${s.dir}/bpffs`,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const waitFor = async (count: number) => {
    const deadline = Date.now() + 30_000;
    while (out.split("\n").length - 1 < count) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${count} lines: ${out}`)),
          deadline - Date.now(),
        );
      });
      try {
        const { value, done } = await Promise.race([reader.read(), timeout]);
        if (done) throw new Error(`ended with: ${out}`);
        out += value;
      } finally {
        clearTimeout(timer);
      }
    }
  };
  try {
    await waitFor(1);
    await Deno.writeTextFile(log, `${event(2)}\n`, { append: true });
    await waitFor(2);
    await Deno.rename(log, `${log}.1`);
    await Deno.writeTextFile(log, `${event(3)}\n`);
    await waitFor(3);
  } finally {
    child.kill("SIGTERM");
  }
  const rest = await reader.read();
  if (!rest.done) out += rest.value ?? "";
  reader.releaseLock();
  const status = await child.status;
  const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
  assert.equal(status.code, 0, stderr);
  assert.deepEqual(out.trimEnd().split("\n"), [event(1), event(2), event(3)]);
});
