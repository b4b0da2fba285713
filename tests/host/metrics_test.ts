/**
 * `metrics` against the real kernel and the real tools operators run: promtool (Debian's prometheus package)
 * accepts the output; node_exporter's textfile collector, scraped over loopback while the textfile is
 * rewritten in a tight loop, always shows the aegisbpf families and never a scrape error. The policy
 * denies a connect to one TEST-NET-1 address at the cgroup v2 root, in a private bpffs.
 */
import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { writeTextfile } from "../../lib/commands/metrics.ts";
import { collect, families } from "../../lib/metrics/collect.ts";
import { exposition } from "../../lib/metrics/exposition.ts";
import { type Scratch, scratch } from "../cli/cli.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { rootTest, run } from "../support/privileged.ts";
import { freeTcpPort } from "../support/listeners.ts";

const TARGET = "192.0.2.78";
const POLICY = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: metrics-test
  version: 4
spec:
  mode: enforce
  network:
    egress:
      deny: [{ id: target, cidr: ${TARGET}/32, ports: [80], protocol: tcp, tags: [T1552.005, test] }]
`;

async function withPolicy(fn: (s: Scratch, bpffs: string) => Promise<void>): Promise<void> {
  const bpffs = await TestBpffs.mount();
  try {
    await using s = await scratch();
    try {
      await Deno.writeTextFile(`${s.dir}/p.yaml`, POLICY);
      const apply = await s.run(["policy", "apply", "p.yaml"], { env: { AEGISBPF_BPFFS: bpffs.path } });
      assert.equal(apply.code, 0, apply.stderr);
      await fn(s, bpffs.path);
    } finally {
      DataPlane.detach(bpffs.path);
    }
  } finally {
    await bpffs.unmount();
  }
}

/** One sample's value, or undefined when the exposition has no such line. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function promtool(text: string): Promise<{ code: number; output: string }> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  })
    .spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, output: decoder.decode(stdout) + decoder.decode(stderr) };
}

rootTest(
  "[root] metrics reports the applied policy, deny counts and break-glass, and promtool accepts it",
  async () => {
    await withPolicy(async (s, bpffs) => {
      const env = { env: { AEGISBPF_BPFFS: bpffs } };
      const denied = await run("timeout", ["2", "bash", "-c", `exec 3<>/dev/tcp/${TARGET}/80`]);
      assert.match(denied.stderr, /Operation not permitted/);

      const { code, stdout, stderr } = await s.run(["metrics"], env);
      assert.equal(code, 0, stderr);
      const check = await promtool(stdout);
      assert.equal(check.code, 0, check.output);
      assert.equal(check.output, "", "promtool has no lint complaint either");
      assert.equal(sample(stdout, "aegisbpf_pinned"), 1);
      assert.equal(sample(stdout, "aegisbpf_enforcing"), 1);
      assert.equal(sample(stdout, "aegisbpf_break_glass_active"), 0);
      assert.equal(sample(stdout, "aegisbpf_policy_version"), 4);
      assert.match(stdout, /^aegisbpf_policy_info\{name="metrics-test",sha256="[0-9a-f]{64}"\} 1$/m);
      assert.ok(sample(stdout, 'aegisbpf_decisions_total{hook="connect",decision="deny"}')! >= 1);
      assert.equal(sample(stdout, 'aegisbpf_hook_attached{hook="connect4"}'), 1);
      assert.ok(
        sample(stdout, 'aegisbpf_rule_hits_total{rule="target",decision="deny",tags="T1552.005,test"}')! >= 1,
        "per-rule hits, with the rule's tags",
      );
      // The /32 rule is in the hash of whole addresses, the trie holds none.
      assert.equal(sample(stdout, 'aegisbpf_map_entries{map="net_exact"}'), 1);
      assert.equal(sample(stdout, 'aegisbpf_map_entries{map="net_rules"}'), 0);
      assert.equal(sample(stdout, 'aegisbpf_map_capacity{map="rules"}'), 1 << 20);
      assert.ok(
        Math.abs(sample(stdout, "aegisbpf_policy_applied_timestamp_seconds")! - Date.now() / 1000) < 120,
      );

      const on = await s.run(["break-glass", "on", "--reason", "metrics test"], env);
      assert.equal(on.code, 0, on.stderr);
      const glass = await s.run(["metrics"], env);
      assert.equal(sample(glass.stdout, "aegisbpf_break_glass_active"), 1);
      assert.equal(sample(glass.stdout, "aegisbpf_enforcing"), 0);
    });
  },
);

rootTest("[root] metrics --out writes atomically with mode 0644 and refuses a bad path", async () => {
  await withPolicy(async (s, bpffs) => {
    const env = { env: { AEGISBPF_BPFFS: bpffs } };
    await Deno.mkdir(`${s.dir}/textfile`);
    // The umask the command inherits: set for its spawn only (it is the whole test process's).
    const umask = Deno.umask(0o077);
    let out;
    try {
      out = await s.run(["metrics", "--out", "textfile/aegisbpf.prom"], env);
    } finally {
      Deno.umask(umask);
    }
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, "");
    const info = await Deno.stat(`${s.dir}/textfile/aegisbpf.prom`);
    assert.equal(info.mode! & 0o777, 0o644);
    assert.deepEqual([...Deno.readDirSync(`${s.dir}/textfile`)].map((e) => e.name), ["aegisbpf.prom"]);
    const missing = await s.run(["metrics", "--out", "nowhere/aegisbpf.prom"], env);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no directory nowhere; create it or fix the path/);
    const notProm = await s.run(["metrics", "--out", "textfile/aegisbpf.txt"], env);
    assert.equal(notProm.code, 2);
    assert.match(notProm.stderr, /reads only \*\.prom files/);
  });
});

rootTest(
  "[root] node_exporter scrapes the textfile while it is rewritten in a tight loop, never torn",
  async () => {
    await withPolicy(async (s, bpffs) => {
      const dir = `${s.dir}/textfile`;
      await Deno.mkdir(dir);
      const path = `${dir}/aegisbpf.prom`;
      writeTextfile(path, exposition(families(collect({ bpffs, stateDir: s.stateDir }))));
      const port = freeTcpPort();
      const exporter = new Deno.Command("prometheus-node-exporter", {
        args: [
          "--collector.disable-defaults",
          "--collector.textfile",
          `--collector.textfile.directory=${dir}`,
          `--web.listen-address=127.0.0.1:${port}`,
        ],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let writing = true;
      let writes = 0;
      const writer = (async () => {
        while (writing) {
          writeTextfile(path, exposition(families(collect({ bpffs, stateDir: s.stateDir }))));
          writes++;
          await new Promise((resolve) => setTimeout(resolve, 0));
        }
      })();
      try {
        let scrapes = 0;
        for (let attempt = 0; scrapes < 50 && attempt < 400; attempt++) {
          let body: string;
          try {
            body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
          } catch {
            await new Promise((resolve) => setTimeout(resolve, 50)); // not listening yet
            continue;
          }
          scrapes++;
          assert.equal(sample(body, "node_textfile_scrape_error"), 0, body.slice(0, 2000));
          assert.equal(sample(body, "aegisbpf_pinned"), 1);
          assert.equal(sample(body, "aegisbpf_enforcing"), 1);
          assert.match(body, /^aegisbpf_decisions_total\{decision="deny",hook="connect"\} \d+$/m);
          assert.match(body, /^aegisbpf_build_info\{kernel="[^"]+",libbpf="[\d.]+",version="[^"]+"\} 1$/m);
        }
        assert.equal(scrapes, 50, "node_exporter answered");
        assert.ok(writes > 50, `the textfile was rewritten ${writes} times during the scrapes`);
      } finally {
        writing = false;
        await writer;
        exporter.kill("SIGTERM");
        await exporter.output();
      }
    });
  },
);
