import assert from "node:assert/strict";
import { HOOK } from "../../ffi/mod.ts";
import { InputError, RefusedError } from "../../lib/errors.ts";
import { kernelExceptions } from "../../lib/kernel/exceptions.ts";
import {
  addException,
  type ExceptionRequest,
  listExceptions,
  removeExceptions,
} from "../../lib/ops/exceptions.ts";
import { exceptionsFile, readHistoryNotes } from "../../lib/state/exceptions.ts";
import { rootTest } from "../support/privileged.ts";
import { drain, ruleSet, withPlane } from "../support/plane.ts";
import type { TestCgroup } from "../support/cgroup.ts";
import type { DataPlane } from "../../lib/kernel/dataplane.ts";
import { ipv4Rule } from "../support/slice.ts";
import { collect, families } from "../../lib/metrics/collect.ts";
import { exposition } from "../../lib/metrics/exposition.ts";
import { checkHealth } from "../../lib/report/health.ts";
import { aegisbpf } from "../cli/cli.ts";

const DENIED = "127.0.0.2";
const DENY_PARTS = {
  rules: [
    { id: "default", area: "ingress" as const, action: "deny" as const },
    { id: "loopback2", area: "egress" as const, action: "deny" as const },
  ],
  egress: [ipv4Rule(`${DENIED}/32`, 1)],
};
const DENY = ruleSet({ mode: "enforce", ...DENY_PARTS });
const LOCK = { uid: 0, wait: false, onWait: () => {} };

type Fixture = {
  paths: { bpffs: string; stateDir: string; configDir: string };
  plane: DataPlane;
  cgroup: TestCgroup;
  connect: () => Promise<string>;
  port: number;
};

/** A plane enforcing DENY on a test cgroup, with private state and config directories. */
async function withDeny(fn: (fixture: Fixture) => Promise<void>): Promise<void> {
  const stateDir = Deno.makeTempDirSync({ prefix: "aegisbpf-test-state-" });
  const configDir = Deno.makeTempDirSync({ prefix: "aegisbpf-test-config-" });
  try {
    await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, bpffs, server }) => {
      await plane.apply(DENY);
      await fn({
        paths: { bpffs: bpffs.path, stateDir, configDir },
        plane,
        cgroup,
        connect: () => cgroup.connect(DENIED, server.port),
        port: server.port,
      });
    });
  } finally {
    Deno.removeSync(stateDir, { recursive: true });
    Deno.removeSync(configDir, { recursive: true });
  }
}

function request(parts: Partial<ExceptionRequest> = {}): ExceptionRequest {
  return { allow: `egress:${DENIED}/32`, ttl: "10m", reason: "INC-7 vendor download", ...parts };
}

rootTest(
  "[root] an egress exception lets a denied connect through, names itself in the event, and remove ends it",
  async () => {
    await withDeny(async ({ paths, plane, connect }) => {
      assert.equal(await connect(), "EPERM", "denied before");
      drain(plane);
      const added = await addException(paths, request({ ticket: "CHG-1" }), LOCK);
      assert.equal(added.state, "active");
      assert.equal(await connect(), "connected", "allowed with the exception");
      const events = drain(plane).filter((e) => e.hook === HOOK.CONNECT);
      assert.ok(events.length > 0, "the let-through connect is reported");
      assert.equal(events[0]!.exception, added.id, "the event names the exception");
      assert.equal(events[0]!.decision, 1, "as an audit decision: allowed");
      assert.deepEqual(listExceptions(paths).map((v) => [v.id, v.state, v.ticket]), [[
        added.id,
        "active",
        "CHG-1",
      ]]);
      const metrics = exposition(families(collect(paths, {})));
      assert.match(metrics, /^aegisbpf_exceptions\{kind="egress"\} 1$/m);
      assert.match(metrics, /^aegisbpf_exceptions\{kind="exec"\} 0$/m);
      const health = checkHealth(paths, { requireEnforce: false, connections: false, staleRules: false });
      assert.equal(health.exceptions.active, 1);
      assert.equal(health.exceptions.byKind.egress, 1);
      assert.ok(
        health.warnings.some((w) => w.startsWith(`exception ${added.id} lets egress:${DENIED}/32 through`)),
        health.warnings.join("; "),
      );
      assert.deepEqual(await removeExceptions(paths, { id: added.id }, LOCK), [added.id]);
      assert.equal(await connect(), "EPERM", "denied again after remove");
      assert.deepEqual(kernelExceptions(paths.bpffs), []);
      assert.deepEqual(
        readHistoryNotes(paths.stateDir).map((n) => [n.note, n.exception]),
        [["exception-added", added.id], ["exception-removed", added.id]],
      );
    });
  },
);

rootTest("[root] in audit mode an exception's connects are reported with its number", async () => {
  await withDeny(async ({ paths, plane, connect }) => {
    await plane.apply(ruleSet({ ...DENY_PARTS, mode: "audit" }));
    drain(plane);
    const added = await addException(paths, request(), LOCK);
    assert.equal(await connect(), "connected");
    const events = drain(plane).filter((e) => e.hook === HOOK.CONNECT);
    assert.ok(
      events.some((e) => e.exception === added.id && e.decision === 1 && e.mode === 0),
      "audit, named",
    );
  });
});

rootTest(
  "[root] an egress exception expires in the kernel with no agent, and stays listed as expired",
  async () => {
    await withDeny(async ({ paths, connect }) => {
      const added = await addException(paths, request({ ttl: "2s" }), LOCK);
      assert.equal(await connect(), "connected", "allowed during the TTL");
      await new Promise((resolve) => setTimeout(resolve, 2300));
      assert.equal(await connect(), "EPERM", "denied once the TTL has passed: the kernel keeps the deadline");
      assert.deepEqual(listExceptions(paths).map((v) => [v.id, v.state]), [[added.id, "expired"]]);
      assert.match(exposition(families(collect(paths, {}))), /^aegisbpf_exceptions\{kind="egress"\} 0$/m);
      const health = checkHealth(paths, { requireEnforce: false, connections: false, staleRules: false });
      assert.equal(health.exceptions.active, 0);
      assert.deepEqual(await removeExceptions(paths, { expired: true }, LOCK), [added.id]);
      assert.deepEqual(listExceptions(paths), []);
    });
  },
);

rootTest("[root] an exception survives the apply of a new policy and is not extended by it", async () => {
  await withDeny(async ({ paths, plane, connect }) => {
    const added = await addException(paths, request(), LOCK);
    const before = kernelExceptions(paths.bpffs);
    await plane.apply(ruleSet({
      mode: "enforce",
      rules: [
        { id: "default", area: "ingress", action: "deny" },
        { id: "loopback2-again", area: "egress", action: "deny" },
      ],
      egress: [ipv4Rule(`${DENIED}/32`, 1)],
    }));
    assert.equal(await connect(), "connected", "still allowed under the new generation");
    assert.deepEqual(kernelExceptions(paths.bpffs), before, "same entry, same deadline");
    await removeExceptions(paths, { id: added.id }, LOCK);
    assert.equal(await connect(), "EPERM");
  });
});

rootTest("[root] an exception with --in holds only for that cgroup and below", async () => {
  await withDeny(async ({ paths, cgroup, connect, port }) => {
    const other = cgroup.child("other");
    const inside = cgroup.child("inside");
    const below = inside.child("below");
    const added = await addException(paths, request({ in: inside.relativePath }), LOCK);
    assert.equal(await inside.connect(DENIED, port), "connected", "the cgroup named is excepted");
    assert.equal(await below.connect(DENIED, port), "connected", "and the cgroups below it");
    assert.equal(await connect(), "EPERM", "its parent is not");
    assert.equal(await other.connect(DENIED, port), "EPERM", "nor a sibling");
    await removeExceptions(paths, { id: added.id }, LOCK);
    assert.equal(await inside.connect(DENIED, port), "EPERM");
  });
});

rootTest("[root] a port-scoped egress exception lets only that port through", async () => {
  await withDeny(async ({ paths, connect, port }) => {
    const other = await addException(
      paths,
      request({ allow: `egress:${DENIED}:${port === 1 ? 2 : 1}` }),
      LOCK,
    );
    assert.equal(await connect(), "EPERM", "another port is still denied");
    await removeExceptions(paths, { id: other.id }, LOCK);
    await addException(paths, request({ allow: `egress:${DENIED}:${port}` }), LOCK);
    assert.equal(await connect(), "connected", "the port named is allowed");
  });
});

rootTest(
  "[root] bad exception input is refused with exit 2, naming the flag, and nothing is written",
  async () => {
    await withDeny(async ({ paths, connect }) => {
      const cases: [Partial<ExceptionRequest>, RegExp][] = [
        [{ allow: "exec:/no/such/file" }, /--allow exec:\/no\/such\/file: no such file/],
        [{ allow: "file:relative/path" }, /--allow .*absolute/],
        [{ allow: "egress:10.0.0.300/8" }, /--allow .*Invalid/],
        [{ allow: "egress:10.0.0.0/8:99999" }, /--allow .*port/],
        [{ allow: "ssh:host" }, /--allow .*exec:PATH/],
        [{ ttl: "0s" }, /--ttl must be longer than zero/],
        [{ ttl: "-5m" }, /--ttl "-5m" is not a duration/],
        [{ ttl: "8d" }, /--ttl 8d is longer than an exception may live here \(7d/],
        [{ reason: "   " }, /--reason is required/],
        [{ reason: "" }, /--reason is required/],
        [{ reason: "a\u001b[31mred" }, /--reason holds a control character/],
        [{ reason: "x".repeat(201) }, /--reason is longer than 200/],
        [{ ticket: "" }, /--ticket is empty/],
        [{ in: "../escape" }, /--in/],
        [{ in: "aegisbpf-no-such-cgroup" }, /--in aegisbpf-no-such-cgroup: no such cgroup/],
      ];
      for (const [parts, message] of cases) {
        const input = { ...request(), ...parts };
        await assert.rejects(addException(paths, input, LOCK), (error: Error) => {
          assert.ok(error instanceof InputError, `${JSON.stringify(parts)}: ${error.message}`);
          assert.match(error.message, message);
          return true;
        });
      }
      assert.throws(() => Deno.statSync(exceptionsFile(paths.stateDir)), Deno.errors.NotFound);
      assert.deepEqual(kernelExceptions(paths.bpffs), []);
      assert.equal(await connect(), "EPERM");
    });
  },
);

rootTest("[root] exceptionMaxTtl in config.yaml raises the longest TTL", async () => {
  await withDeny(async ({ paths }) => {
    Deno.writeTextFileSync(`${paths.configDir}/config.yaml`, "exceptionMaxTtl: 14d\n");
    const added = await addException(paths, request({ ttl: "10d" }), LOCK);
    assert.equal(added.state, "active");
    await assert.rejects(
      addException(paths, request({ ttl: "15d", allow: "egress:127.0.0.3" }), LOCK),
      /--ttl 15d/,
    );
  });
});

rootTest("[root] exception add refuses (exit 3) where no data plane is pinned", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-test-noplane-" });
  try {
    const paths = { bpffs: dir, stateDir: `${dir}/state`, configDir: `${dir}/config` };
    await assert.rejects(addException(paths, request(), LOCK), RefusedError);
    assert.throws(() => Deno.statSync(exceptionsFile(paths.stateDir)), Deno.errors.NotFound);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

rootTest(
  "[root] aegisbpf exception add|list|remove from the command line: exit codes, JSON, history notes",
  async () => {
    await withDeny(async ({ paths, connect }) => {
      const env = {
        AEGISBPF_BPFFS: paths.bpffs,
        AEGISBPF_STATE_DIR: paths.stateDir,
        AEGISBPF_CONFIG_DIR: paths.configDir,
      };
      const cli = (...args: string[]) => aegisbpf(args, { env });
      const missing = await cli(
        "exception",
        "add",
        "--allow",
        "exec:/no/such/tool",
        "--ttl",
        "5m",
        "--reason",
        "r",
      );
      assert.equal(missing.code, 2, missing.stderr);
      assert.match(missing.stderr, /--allow exec:\/no\/such\/tool: no such file/);
      const long = await cli(
        "exception",
        "add",
        "--allow",
        `egress:${DENIED}`,
        "--ttl",
        "8d",
        "--reason",
        "r",
      );
      assert.equal(long.code, 2);
      assert.match(long.stderr, /--ttl 8d is longer/);
      const noReason = await cli("exception", "add", "--allow", `egress:${DENIED}`, "--ttl", "5m");
      assert.equal(noReason.code, 2);
      assert.match(noReason.stderr, /--reason/);
      const added = await cli(
        "exception",
        "add",
        "--allow",
        `egress:${DENIED}`,
        "--ttl",
        "5m",
        "--reason",
        "INC-5",
        "--ticket",
        "CHG-5",
        "--json",
      );
      assert.equal(added.code, 0, added.stderr);
      const id = JSON.parse(added.stdout).id;
      assert.equal(await connect(), "connected");
      const listed = await cli("exception", "list");
      assert.match(
        listed.stdout,
        new RegExp(`^${id}  active  egress:${DENIED}  until .*reason: INC-5  ticket: CHG-5$`, "m"),
      );
      const health = await cli("health");
      assert.match(health.stdout + health.stderr, /exceptions\s+1 active \(egress 1\)/);
      const removed = await cli("exception", "remove", String(id));
      assert.equal(removed.code, 0, removed.stderr);
      assert.equal(await connect(), "EPERM");
      assert.equal((await cli("exception", "remove", String(id))).code, 2, "no such exception");
      const notes = JSON.parse((await cli("policy", "history", "--notes", "--json")).stdout);
      assert.deepEqual(notes.map((n: { note: string }) => n.note), ["exception-added", "exception-removed"]);
    });
  },
);
