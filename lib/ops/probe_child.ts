/**
 * The child that runs one `policy test` probe. `policy test` starts it outside the test cgroup, moves it
 * in once it says `ready` (a runtime's start may take seconds on a slow host), then writes a line to its
 * stdin: only then does it act, so that the probe is the only thing the
 * candidate sees (no shell, no exec of a helper under an exec allowlist). It takes the case's uid and gid,
 * does the probe and prints one JSON line: `{"result":"ok"|"EPERM"|…,"detail":…}`.
 */
import dgram from "node:dgram";
import { becomeUser, connectUdp } from "../../ffi/mod.ts";
import { parseCidr } from "../policy/cidr.ts";
import type { Probe } from "../policy/test_file.ts";

/** The first argument that makes this program the probe child; then the probe as JSON, and `uid:gid`. */
export const PROBE_ARGUMENT = "__probe";

/** How long a probe may take: a connect to an address nothing answers would wait minutes. */
export const PROBE_TIMEOUT_MS = 3000;

export type ProbeReply = { result: string; detail?: string };

/** Runs the probe of `args` once stdin says go; prints the reply; returns the exit code. */
export async function probeChildMain(args: readonly string[]): Promise<number> {
  const [probeJson = "", ids = ""] = args;
  const probe = JSON.parse(probeJson) as Probe;
  console.log("ready"); // started: the parent moves this process into the test cgroup, then says go
  const reader = Deno.stdin.readable.getReader();
  const go = await reader.read();
  reader.releaseLock();
  // The parent went away before the go (killed): the probe never runs outside the test cgroup.
  if (go.done) return 1;
  let reply: ProbeReply;
  try {
    if (ids !== "") {
      const [uid, gid] = ids.split(":").map(Number) as [number, number];
      becomeUser(uid, gid);
    }
    reply = await withTimeout(runProbe(probe));
  } catch (error) {
    reply = failure(error);
  }
  console.log(JSON.stringify(reply));
  return 0;
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
      using _file = Deno.openSync(probe.path, { read: !probe.write, write: probe.write });
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

async function withTimeout(work: Promise<ProbeReply>): Promise<ProbeReply> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<ProbeReply>((resolve) => {
    timer = setTimeout(
      () => resolve({ result: "ok", detail: `let through: no answer in ${PROBE_TIMEOUT_MS} ms` }),
      PROBE_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}
