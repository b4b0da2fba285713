/**
 * Connections made before apply: a TCP connection and a connected UDP socket to an address the new rules
 * deny are closed by the sweep where the kernel has bpf_sock_destroy (6.5+: this host), and listed as
 * still open in audit; connections to other addresses, and out of scope, are left alone.
 */
import assert from "node:assert/strict";
import { BUILD_PROGRAMS, FdMap, PinnedProgram, programId } from "../../ffi/mod.ts";
import { kernelCanCloseSockets, sweepConnections } from "../../lib/kernel/connections.ts";
import { openAegisObject, PROGRAMS } from "../../lib/kernel/object.ts";
import { exists } from "../../lib/kernel/pin_dir.ts";
import { BUILD_MAP, readBuildRecord, writeBuildRecord } from "../../lib/kernel/programs.ts";
import type { RuleInfo } from "../../lib/policy/plan.ts";
import type { TestCgroup } from "../support/cgroup.ts";
import { ruleSet, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { ipv4Rule } from "../support/slice.ts";

const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "deny-loopback2", area: "egress", action: "deny" },
];

/** A TCP server on 127.0.0.2 and 127.0.0.3 that keeps every connection open until stopped. */
function holdingServer(): { port: number; stop: () => void } {
  const first = Deno.listen({ hostname: "127.0.0.2", port: 0 });
  const port = (first.addr as Deno.NetAddr).port;
  const listeners = [first, Deno.listen({ hostname: "127.0.0.3", port })];
  const held: Deno.Conn[] = [];
  for (const listener of listeners) {
    (async () => {
      try {
        for await (const connection of listener) held.push(connection);
      } catch {
        // closed by stop()
      }
    })();
  }
  return {
    port,
    stop: () => {
      for (const listener of listeners) listener.close();
      for (const connection of held) connection.close();
    },
  };
}

/**
 * A client in `cgroup` holding a socket connected with bash's /dev/tcp or /dev/udp: it says "connected",
 * then, on "go", writes once and says whether the write worked.
 */
class Client {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<string>;

  constructor(cgroup: TestCgroup, transport: "tcp" | "udp", host: string, port: number) {
    const script =
      `echo $$ > '${cgroup.path}/cgroup.procs' && exec 3<>/dev/${transport}/${host}/${port} && ` +
      `echo connected && read go && { echo ping >&3 && sleep 0.2 && echo ping >&3 && echo written || echo failed; }`;
    this.#child = new Deno.Command("bash", {
      args: ["-c", script],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    })
      .spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#reader = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  async line(): Promise<string> {
    return ((await this.#reader.read()).value ?? "").trim();
  }

  /** Ends the client if it still runs (a failed assertion left it waiting), so the cgroup can go. */
  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // it has exited
    }
    await this.#child.status;
  }

  /** Writes twice (a TCP write after a reset is the one that fails) and returns "written" or "failed". */
  async write(): Promise<string> {
    await this.#writer.write(new TextEncoder().encode("go\n"));
    const result = await this.line();
    await this.#writer.close();
    return result;
  }
}

let lastPinDir: string | undefined;

async function withClients(
  mode: "enforce" | "audit",
  fn: (sweep: () => ReturnType<typeof sweepConnections>, clients: Record<string, Client>) => Promise<void>,
): Promise<void> {
  const server = holdingServer();
  try {
    await withPlane({ areas: ["egress"] }, async ({ plane, cgroup }) => {
      const clients = {
        tcpDenied: new Client(cgroup, "tcp", "127.0.0.2", server.port),
        tcpAllowed: new Client(cgroup, "tcp", "127.0.0.3", server.port),
        udpDenied: new Client(cgroup, "udp", "127.0.0.2", 53),
      };
      try {
        for (const client of Object.values(clients)) assert.equal(await client.line(), "connected");
        // Made before apply: the connect hooks never saw these.
        await plane.apply(ruleSet({ mode, rules: RULES, egress: [ipv4Rule("127.0.0.2/32", 1)] }));
        lastPinDir = plane.pinDir;
        await fn(() => sweepConnections(plane.pinDir), clients);
      } finally {
        for (const client of Object.values(clients)) await client.stop();
      }
    });
  } finally {
    server.stop();
  }
}

rootTest(
  "[root] sweep: connections made before apply to a denied address are closed in enforce (6.5+)",
  async () => {
    await withClients("enforce", async (sweep, clients) => {
      const result = sweep();
      const found = result.connections.map((c) => `${c.protocol} ${c.daddr}:${c.dport} ${c.closed}`).sort();
      const closed = kernelCanCloseSockets();
      assert.equal(result.canClose, closed);
      const port = result.connections.find((c) => c.protocol === "tcp")?.dport;
      assert.deepEqual(found, [`tcp 127.0.0.2:${port} ${closed}`, `udp 127.0.0.2:53 ${closed}`]);
      assert.ok(result.connections.every((c) => c.ruleId === 1 && c.uid === 0));
      assert.equal(await clients.tcpDenied!.write(), closed ? "failed" : "written");
      assert.equal(await clients.tcpAllowed!.write(), "written", "the allowed connection is untouched");
      await clients.udpDenied!.write();
      assert.deepEqual(sweep().connections.filter((c) => c.protocol === "tcp"), [], "nothing left to close");
    });
  },
);

rootTest("[root] sweep: removes the iterator pin a killed sweep left behind", async () => {
  await withClients("audit", async (sweep, clients) => {
    // A pid that is not running: 2^22 is above the kernel's pid_max limit.
    const stale = `${lastPinDir}/sweep-4194304-tcp`;
    const object = openAegisObject([PROGRAMS.listTcp], `${lastPinDir}/maps`).load();
    try {
      object.program(PROGRAMS.listTcp).attach().pin(stale); // as a sweep killed before its unpin leaves it
    } finally {
      object.close();
    }
    assert.ok(Deno.statSync(stale));
    sweep();
    assert.throws(() => Deno.statSync(stale), Deno.errors.NotFound);
    for (const client of Object.values(clients)) await client.write();
  });
});

rootTest("[root] sweep: close: false lists in enforce and closes nothing (for health)", async () => {
  await withClients("enforce", async (sweep, clients) => {
    assert.ok(sweep !== undefined);
    const listed = sweepConnections(lastPinDir!, { close: false });
    assert.equal(listed.connections.length, 2);
    assert.ok(listed.connections.every((c) => !c.closed));
    assert.equal(await clients.tcpDenied!.write(), "written", "still open");
    await clients.tcpAllowed!.write();
    await clients.udpDenied!.write();
  });
});

rootTest("[root] sweep: in audit the connections are listed and left open", async () => {
  await withClients("audit", async (sweep, clients) => {
    const result = sweep();
    assert.equal(result.connections.length, 2);
    assert.ok(result.connections.every((c) => !c.closed));
    assert.equal(await clients.tcpDenied!.write(), "written");
    await clients.tcpAllowed!.write();
    await clients.udpDenied!.write();
  });
});

/** The kernel's id of the program pinned at `path`. */
function pinnedId(path: string): number {
  using program = PinnedProgram.open(path, path);
  return programId(program.fd);
}

rootTest(
  "[root] sweep: its iterators load once per build, pinned and recorded; later walks adopt them; another build's record is never trusted",
  async () => {
    await withClients("audit", async (sweep, clients) => {
      const pinDir = lastPinDir!;
      const tcp = `${pinDir}/progs/${PROGRAMS.sweepTcp}`;
      const buildBits = () => readBuildRecord(`${pinDir}/maps`)!.programs;
      assert.equal(buildBits() & BUILD_PROGRAMS.SWEEP, 0, "a load pins no iterator");
      assert.ok(!exists(tcp));
      assert.equal(sweep().connections.length, 2);
      assert.ok(buildBits() & BUILD_PROGRAMS.SWEEP, "the first walk records its iterators");
      assert.equal(buildBits() & BUILD_PROGRAMS.LIST, 0, "and only those it loaded");
      const id = pinnedId(tcp);
      assert.equal(sweep().connections.length, 2);
      assert.equal(pinnedId(tcp), id, "the next walk adopts them: none is loaded again");

      using build = FdMap.open(`${pinDir}/maps/${BUILD_MAP}`);
      const record = readBuildRecord(`${pinDir}/maps`)!;
      // A record naming another object: its pins are not this build's programs.
      const other = { ...record, sha256: record.sha256.map((byte) => byte ^ 0xff) };
      writeBuildRecord(build, other);
      assert.equal(sweep().connections.length, 2, "the walk loads its own programs");
      assert.equal(pinnedId(tcp), id, "and leaves another build's pins alone");
      assert.deepEqual(readBuildRecord(`${pinDir}/maps`), other);
      // This build's record without the bit: loaded again, pinned in place of the old ones, recorded.
      writeBuildRecord(build, { ...record, programs: record.programs & ~BUILD_PROGRAMS.SWEEP });
      assert.equal(sweep().connections.length, 2);
      assert.notEqual(pinnedId(tcp), id);
      assert.ok(buildBits() & BUILD_PROGRAMS.SWEEP);

      const listed = sweepConnections(pinDir, { close: false });
      assert.equal(listed.connections.length, 2);
      assert.ok(buildBits() & BUILD_PROGRAMS.LIST, "the listing walk pins its own pair");
      assert.ok(exists(`${pinDir}/progs/${PROGRAMS.listUdp}`));
      for (const client of Object.values(clients)) await client.write();
    });
  },
);
