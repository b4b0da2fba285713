/**
 * `policy apply` closes (6.5+) or lists the connections made before it to what it now denies. The CLI's
 * programs attach to the cgroup v2 root, so the denied address is one loopback address of this test's own
 * (127.77.x.y from the pid), which nothing else on the host uses.
 */
import assert from "node:assert/strict";
import { kernelCanCloseSockets } from "../../lib/kernel/connections.ts";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { scratch } from "../cli/cli.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { rootTest } from "../support/privileged.ts";

const ADDRESS = `127.77.${(Deno.pid >> 8) & 0xff}.${Deno.pid & 0xff || 1}`;

const policy = (mode: string) =>
  `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: sweep-test
  version: 1
spec:
  mode: ${mode}
  network:
    egress:
      deny: [{ id: this-test, cidr: ${ADDRESS}/32 }]
`;

/** A TCP connection to ADDRESS made before any apply: the listener, its port and both ends. */
async function connectedPair() {
  const listener = Deno.listen({ hostname: ADDRESS, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const accepted = listener.accept();
  const client = await Deno.connect({ hostname: ADDRESS, port });
  return { listener, port, client, server: await accepted };
}

for (const mode of ["enforce", "audit"]) {
  rootTest(
    `[root] policy apply (${mode}) reports a connection made before it to a denied address`,
    async () => {
      const { listener, port, client, server } = await connectedPair();
      const bpffs = await TestBpffs.mount();
      try {
        await using s = await scratch();
        const file = `${s.dir}/p.yaml`;
        await Deno.writeTextFile(file, policy(mode));
        try {
          const result = await s.run(["policy", "apply", file], { env: { AEGISBPF_BPFFS: bpffs.path } });
          assert.equal(result.code, 0, result.stderr);
          const closed = mode === "enforce" && kernelCanCloseSockets();
          const lines = result.stdout.split("\n");
          assert.ok(
            lines.includes(
              `connections made before apply to denied destinations: ${
                closed ? "1 closed, 0" : "0 closed, 1"
              } ` +
                `still open${mode === "audit" ? " (audit: left open)" : ""}`,
            ),
            result.stdout,
          );
          const line = lines.find((l) => l.includes(`-> ${ADDRESS}:${port} `));
          assert.ok(line?.includes("rule this-test"), result.stdout);
          assert.ok(line?.endsWith(closed ? "closed" : "still open"), line);
          // The client's next writes fail once its socket is closed (the reset comes back at once on loopback).
          const data = new TextEncoder().encode("x");
          let failed = false;
          for (let i = 0; i < 3 && !failed; i++) {
            failed = await client.write(data).then(() => false, () => true);
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
          assert.equal(failed, closed);
          // health lists what is still open (and closes nothing); where the apply closed them (6.5+,
          // enforce) it loads no iterator and lists nothing.
          const health = await s.run(["health", "--json"], { env: { AEGISBPF_BPFFS: bpffs.path } });
          const report = JSON.parse(health.stdout);
          if (closed) assert.equal(report.connections, null, health.stdout);
          else {
            assert.equal(report.connections.open, 1, health.stdout);
            assert.match(
              report.connections.sample[0],
              new RegExp(`-> ${ADDRESS.replaceAll(".", "\\.")}:${port} `),
            );
            assert.ok(
              report.warnings.some((w: string) => /connections made before the apply still reach/.test(w)),
            );
          }
        } finally {
          DataPlane.detach(bpffs.path);
        }
      } finally {
        await bpffs.unmount();
        client.close();
        server.close();
        listener.close();
      }
    },
  );
}

/** An audit policy (the sweep lists and leaves open, every time it walks) denying `cidrs`, and maybe a port. */
const auditPolicy = (version: number, cidrs: string[], bind = false) =>
  policy("audit").replace("version: 1", `version: ${version}`).replace(
    `deny: [{ id: this-test, cidr: ${ADDRESS}/32 }]`,
    `deny: [${cidrs.map((cidr, i) => `{ id: rule-${i}, cidr: ${cidr} }`).join(", ")}]`,
  ) + (bind ? "    bind:\n      deny: [{ id: a-port, port: 61849, protocol: tcp }]\n" : "");

rootTest(
  "[root] policy apply that adds no egress deny loads no iterator; one that adds a deny sweeps",
  async () => {
    const { listener, port, client, server } = await connectedPair();
    const bpffs = await TestBpffs.mount();
    try {
      await using s = await scratch();
      const apply = async (text: string) => {
        const file = `${s.dir}/p.yaml`;
        await Deno.writeTextFile(file, text);
        const result = await s.run(["--log-level", "debug", "policy", "apply", file], {
          env: { AEGISBPF_BPFFS: bpffs.path },
        });
        assert.equal(result.code, 0, result.stderr);
        return {
          listed: result.stdout.includes(`-> ${ADDRESS}:${port} `),
          swept: /phase sweep: /.test(result.stderr),
        };
      };
      try {
        const denied = `${ADDRESS}/32`;
        assert.deepEqual(await apply(auditPolicy(1, [denied])), { listed: true, swept: true });
        // A bind rule more: no connection can be newly denied, so no iterator is loaded.
        assert.deepEqual(await apply(auditPolicy(2, [denied], true)), { listed: false, swept: false });
        // One egress deny more: the sweep walks again (and lists the older connection again).
        assert.deepEqual(await apply(auditPolicy(3, [denied, "192.0.2.77/32"], true)), {
          listed: true,
          swept: true,
        });
        // Removing it again denies nothing new.
        assert.deepEqual(await apply(auditPolicy(4, [denied], true)), { listed: false, swept: false });
      } finally {
        DataPlane.detach(bpffs.path);
      }
    } finally {
      await bpffs.unmount();
      client.close();
      server.close();
      listener.close();
    }
  },
);
