/**
 * `policy apply --canary` counts only the denies of the canary policy in its scope: an unprivileged user
 * (uid 65534) outside the scope cannot roll a canary back, neither with connects the policy before it
 * denies (host-wide) while the canary goes in, nor with packets the canary's own ingress rule drops; a
 * deny inside the scope rolls it back at once. The socket programs attach at the cgroup v2 root, XDP to
 * a veth in a test namespace (the command runs in that namespace); the private bpffs, state, cgroups and
 * namespaces are removed in `finally`.
 */
import assert from "node:assert/strict";
import { pinnedCounters } from "../../lib/kernel/inspect.ts";
import { listHistory } from "../../lib/state/history.ts";
import { type Host, withHost, writePolicy } from "../support/agent_host.ts";
import { TestCgroup } from "../support/cgroup.ts";
import { VethPair } from "../support/netns.ts";
import { rootTest, run } from "../support/privileged.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
/** A port refused at once on 127.0.0.2 when allowed (nothing listens), different for each test process. */
const PORT = 62400 + (Deno.pid % 300);
const NOBODY = ["--reuid=65534", "--regid=65534"];

const policy = (version: number, body: string) =>
  `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: canary-scope, version: ${version} }\n` +
  `spec:\n  mode: enforce\n${body}`;

type Running = { stderr: () => string; done: Promise<{ code: number; stdout: string; stderr: string }> };

/** Runs aegisbpf in the server namespace with the host's directories; its stderr readable as it comes. */
function aegisbpfIn(host: Host, pair: VethPair, args: string[]): Running {
  const child = new Deno.Command("nsenter", {
    args: [
      `--net=${pair.nsPath(pair.server)}`,
      Deno.execPath(),
      "run",
      "--allow-all",
      "--quiet",
      MAIN,
      ...args,
    ],
    env: { ...host.env, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const read = async (stream: ReadableStream<Uint8Array>, onText: (text: string) => void) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) onText(text);
  };
  let stdout = "";
  const done = Promise.all([
    child.status,
    read(child.stdout, (text) => (stdout += text)),
    read(child.stderr, (text) => (stderr += text)),
  ]).then(([{ code }]) => ({ code, stdout, stderr }));
  return { stderr: () => stderr, done };
}

/** The canary's progress lines (`--log-level debug`): denies counted so far, one per sample. */
const samples = (stderr: string) =>
  [...stderr.matchAll(/canary: \d+s, (\d+) denies/g)].map((m) => Number(m[1]));

const outcomes = (host: Host) => listHistory(host.stateDir).map((entry) => `${entry.seq}:${entry.outcome}`);

/** As uid 65534 in `cgroup`: connects to 127.0.0.2:PORT until `stopFile` exists; prints how many were denied. */
function nobodyConnectLoop(
  cgroup: TestCgroup,
  stopFile: string,
): Promise<{ stdout: string; stderr: string }> {
  const denied = `(exec 3<>/dev/tcp/127.0.0.2/${PORT}) 2>&1 | grep -q 'not permitted'`;
  return cgroup.runBash(
    `d=0; while [ ! -e '${stopFile}' ] && [ $SECONDS -lt 60 ]; do if ${denied}; then d=$((d+1)); fi; done; ` +
      `echo "denied $d"`,
    { setpriv: NOBODY },
  );
}

rootTest(
  "[root] a canary is not rolled back by an unprivileged user's denies outside its scope, and is by one inside",
  async () => {
    const pair = await VethPair.create();
    const outside = TestCgroup.create();
    // Where uid 65534 can see the loop's stop file (the host's directory is 0700).
    const stopDir = Deno.makeTempDirSync({ prefix: "aegisbpf-canary-" });
    Deno.chmodSync(stopDir, 0o755);
    const stopFile = `${stopDir}/stop`;
    let loop: Promise<unknown> | undefined;
    try {
      await withHost(async (host) => {
        // Before: 127.0.0.2:PORT denied to everyone. The canary: the same deny in its scope only, and an
        // ingress rule dropping the client namespace's packets to PORT on the server's veth.
        const base = writePolicy(
          host,
          "base.yaml",
          policy(
            1,
            `  network:\n    egress:\n      deny: [{ id: lo2, cidr: 127.0.0.2/32, ports: [${PORT}], protocol: tcp }]\n`,
          ),
        );
        const canary = writePolicy(
          host,
          "canary.yaml",
          policy(
            2,
            `  scope: { cgroups: ["${host.cgroup.relativePath}"] }\n  network:\n` +
              `    egress:\n      deny: [{ id: lo2, cidr: 127.0.0.2/32, ports: [${PORT}], protocol: tcp }]\n` +
              `    ingress:\n      interfaces: [${pair.serverInterface}]\n` +
              `      deny: [{ id: client, cidr: ${pair.clientAddress}/32, ports: [${PORT}], protocol: udp }]\n`,
          ),
        );
        const applied = await aegisbpfIn(host, pair, ["policy", "apply", base]).done;
        assert.equal(applied.code, 0, applied.stderr);
        // Outside the scope, unprivileged, denied by the policy in force from before the canary goes in.
        const looping = nobodyConnectLoop(outside, stopFile);
        loop = looping;
        const child = aegisbpfIn(host, pair, [
          "policy",
          "apply",
          canary,
          "--log-level",
          "debug",
          "--canary",
          "20s",
          "--max-deny-rate",
          "0",
        ]);
        for (let i = 0; i < 600 && !outcomes(host).includes("2:canary"); i++) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.deepEqual(outcomes(host), ["1:applied", "2:canary"], child.stderr());
        // Packets from the client namespace, sent by uid 65534: dropped by the canary's own ingress rule.
        const ingressBefore = pinnedCounters(host.bpffs)!.decisions.ingress.deny;
        const sent = await run("ip", [
          "netns",
          "exec",
          pair.client,
          "setpriv",
          ...NOBODY,
          "--clear-groups",
          "bash",
          "-c",
          `for i in $(seq 200); do echo x > /dev/udp/${pair.serverAddress}/${PORT}; sleep 0.02; done`,
        ]);
        assert.equal(sent.code, 0, sent.stderr);
        Deno.writeTextFileSync(stopFile, "");
        const tally = await looping;
        const deniedOutside = Number(/denied (\d+)/.exec(tally.stdout)?.[1]);
        const dropped = pinnedCounters(host.bpffs)!.decisions.ingress.deny - ingressBefore;
        assert.ok(dropped > 0n, "the uid 65534 packets were dropped");
        assert.ok(
          deniedOutside > 0,
          `the uid 65534 connects outside were denied before the canary: ${tally.stdout}`,
        );
        // Two samples after the noise: the canary saw it all, and counted none of it.
        const seen = samples(child.stderr()).length;
        for (let i = 0; i < 300 && samples(child.stderr()).length < seen + 2; i++) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.doesNotMatch(child.stderr(), /canary failed/);
        assert.ok(samples(child.stderr()).length >= seen + 2, child.stderr());
        assert.equal(
          samples(child.stderr()).at(-1),
          0,
          `${dropped} drops and ${deniedOutside} denies outside`,
        );
        assert.deepEqual(outcomes(host), ["1:applied", "2:canary"]);
        // A deny inside the scope, by the same unprivileged user: rolled back at once.
        assert.equal(await host.cgroup.connect("127.0.0.2", PORT, { setpriv: NOBODY }), "EPERM");
        const result = await child.done;
        assert.equal(result.code, 1, result.stderr);
        assert.match(
          result.stderr,
          /canary failed after \d+s: the deny rate reached [\d.]+\/s .*\(limit 0\/s\)/,
        );
        assert.deepEqual(outcomes(host), ["1:applied", "2:canary-rolled-back", "3:rolled-back"]);
      });
    } finally {
      Deno.writeTextFileSync(stopFile, "");
      await loop?.catch(() => {});
      Deno.removeSync(stopDir, { recursive: true });
      outside.remove();
      await pair.remove();
    }
  },
);
