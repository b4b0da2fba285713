/**
 * The child that runs `policy test`'s probes for one identity (root, or a case's uid and gid). `policy test`
 * starts it outside the test cgroup, moves it in once it says `ready` (a runtime's start may take seconds on
 * a slow host), then writes one probe a line to its stdin: only then does it act, so that the probes are the
 * only thing the candidate sees (no shell, no exec of a helper under an exec allowlist). At the first probe
 * it takes the uid and gid of its argument; it answers each probe with one JSON line,
 * `{"result":"ok"|"EPERM"|…,"detail":…}`, in order. One child serves every case of its identity: a runtime's
 * start, not the probe, is what costs (seconds under emulation).
 */
import dgram from "node:dgram";
import { becomeUser, connectUdp } from "../../ffi/mod.ts";
import { parseCidr } from "../policy/cidr.ts";
import type { Probe } from "../policy/test_file.ts";

/** The first argument that makes this program the probe child; then `uid:gid`, or nothing for root. */
export const PROBE_ARGUMENT = "__probe";

/** How long a probe may take: a connect to an address nothing answers would wait minutes. */
export const PROBE_TIMEOUT_MS = 3000;

/**
 * A probe's answer. `ended`: the child exits after it (a probe that did not finish in time may still be
 * running, or the identity could not be taken): the parent starts a fresh child for the next case.
 */
export type ProbeReply = { result: string; detail?: string; ended?: true };

/** Answers the probes of stdin one by one until stdin closes; returns the exit code. */
export async function probeChildMain(args: readonly string[]): Promise<number> {
  const [ids = ""] = args;
  console.log("ready"); // started: the parent moves this process into the test cgroup, then sends a probe
  let first = true;
  // stdin closed before a probe (the parent was killed): no probe ever runs outside the test cgroup.
  for await (const line of lines(Deno.stdin.readable)) {
    if (first) {
      first = false;
      try {
        if (ids !== "") {
          const [uid, gid] = ids.split(":").map(Number) as [number, number];
          becomeUser(uid, gid);
        }
      } catch (error) {
        console.log(JSON.stringify({ ...failure(error), ended: true } satisfies ProbeReply));
        return 1;
      }
    }
    const reply = await withTimeout(runProbe(JSON.parse(line) as Probe));
    console.log(JSON.stringify(reply));
    if (reply.ended) return 0;
  }
  return 0;
}

/** The lines of `stream` (UTF-8), without their newline; a last line without one is dropped. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    const parts = text.split("\n");
    text = parts.pop()!;
    yield* parts;
  }
}

async function runProbe(probe: Probe): Promise<ProbeReply> {
  switch (probe.kind) {
    case "exec": {
      const child = new Deno.Command(probe.path, {
        args: probe.args,
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      const timer = setTimeout(() => child.kill("SIGKILL"), PROBE_TIMEOUT_MS - 500);
      const status = await child.status;
      clearTimeout(timer);
      return {
        result: "ok",
        detail: `ran; exit ${status.code}${status.signal ? ` (${status.signal})` : ""}`,
      };
    }
    case "open": {
      // Not openSync: an open that blocks past the hook (a FIFO nobody writes) must leave the timer free.
      using _file = await Deno.open(probe.path, { read: !probe.write, write: probe.write });
      return { result: "ok", detail: "opened" };
    }
    case "connect":
      if (probe.protocol === "udp") return connectDatagram(probe.host, probe.port);
      try {
        const connection = await Deno.connect({ hostname: probe.host, port: probe.port });
        connection.close();
        return { result: "ok", detail: "connected" };
      } catch (error) {
        return letThrough(failure(error));
      }
    case "bind":
      if (probe.protocol === "udp") return await bindDatagram(probe.port);
      try {
        Deno.listen({ hostname: "0.0.0.0", port: probe.port }).close();
        return { result: "ok", detail: "bound" };
      } catch (error) {
        return letThrough(failure(error));
      }
  }
}

/** A UDP connect(2): the egress hook decides it as it would a datagram sent there, and nothing is sent. */
function connectDatagram(host: string, port: number): ProbeReply {
  const errno = connectUdp(parseCidr(host).addr, port);
  if (errno === 0) return { result: "ok", detail: "connected (udp)" };
  return letThrough({ result: ERRNO_NAMES[errno] ?? `errno ${errno}`, detail: `errno ${errno}` });
}

const ERRNO_NAMES: Record<number, string> = { 1: "EPERM", 13: "EACCES" };

function bindDatagram(port: number): Promise<ProbeReply> {
  const socket = dgram.createSocket("udp4");
  return new Promise((resolve) => {
    socket.once("error", (error) => {
      socket.close();
      resolve(letThrough(failure(error)));
    });
    socket.bind(port, "0.0.0.0", () => {
      socket.close();
      resolve({ result: "ok", detail: "bound" });
    });
  });
}

/**
 * Past the hook, a failure is the network's or the port's (refused, unreachable, in use): the kernel let
 * the probe through. Only EPERM and EACCES are a refusal.
 */
function letThrough(reply: ProbeReply): ProbeReply {
  if (reply.result === "EPERM" || reply.result === "EACCES") return reply;
  return { result: "ok", detail: `let through: ${reply.detail ?? reply.result}` };
}

function failure(error: unknown): ProbeReply {
  const text = error instanceof Error ? error.message : String(error);
  const os = /\(os error (\d+)\)/.exec(text)?.[1];
  const code = (error as { code?: unknown }).code;
  const name = os === "1" ? "EPERM" : os === "13" ? "EACCES" : typeof code === "string" ? code : text;
  return { result: name, detail: text };
}

/** The probe's reply, or after PROBE_TIMEOUT_MS a let-through that ends the child (the probe still runs). */
async function withTimeout(work: Promise<ProbeReply>): Promise<ProbeReply> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<ProbeReply>((resolve) => {
    timer = setTimeout(
      () =>
        resolve({ result: "ok", detail: `let through: no answer in ${PROBE_TIMEOUT_MS} ms`, ended: true }),
      PROBE_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([work.catch(failure), late]);
  } finally {
    clearTimeout(timer);
  }
}
