import assert from "node:assert/strict";
import { compilePolicy } from "./compile.ts";
import { parsePolicy, PolicyError } from "./parse.ts";
import { TEST_SECONDS_ENV } from "./window_spec.ts";
import { nextBoundary, nextWindowBoundary, windowOpen } from "./windows.ts";

const at = (iso: string) => Date.parse(iso);

Deno.test("windowOpen() is open from `from` up to `to` on the listed days, by the zone's wall clock", () => {
  const office = { days: ["mon", "tue", "wed", "thu", "fri"] as const, from: "08:00", to: "18:00" };
  const berlin = { ...office, days: [...office.days], tz: "Europe/Berlin" };
  // 2026-12-07 is a Monday; Berlin is UTC+1 in winter.
  assert.equal(windowOpen(berlin, at("2026-12-07T06:59:59Z")), false);
  assert.equal(windowOpen(berlin, at("2026-12-07T07:00:00Z")), true);
  assert.equal(windowOpen(berlin, at("2026-12-07T16:59:59Z")), true);
  assert.equal(windowOpen(berlin, at("2026-12-07T17:00:00Z")), false, "to is not in the window");
  assert.equal(windowOpen({ ...berlin, tz: undefined }, at("2026-12-07T07:30:00Z")), false, "UTC by default");
  assert.equal(windowOpen(berlin, at("2026-12-06T12:00:00Z")), false, "Sunday");
});

Deno.test("windowOpen() takes a window across midnight as belonging to the day it starts on", () => {
  const friday = { days: ["fri" as const], from: "22:00", to: "06:00" };
  assert.equal(windowOpen(friday, at("2026-12-11T21:59:00Z")), false); // Friday
  assert.equal(windowOpen(friday, at("2026-12-11T23:00:00Z")), true);
  assert.equal(windowOpen(friday, at("2026-12-12T05:59:59Z")), true, "Saturday morning, from Friday");
  assert.equal(windowOpen(friday, at("2026-12-12T06:00:00Z")), false);
  assert.equal(windowOpen(friday, at("2026-12-12T23:00:00Z")), false, "Saturday night is not Friday's");
  assert.equal(windowOpen(friday, at("2026-12-11T03:00:00Z")), false, "Friday morning is Thursday's");
});

Deno.test("nextWindowBoundary() finds each opening and closing, in the zone", () => {
  const office = { from: "08:00", to: "18:00", tz: "America/New_York" }; // UTC-5 in December
  assert.equal(nextWindowBoundary(office, at("2026-12-07T12:00:00Z")), at("2026-12-07T13:00:00Z"));
  assert.equal(nextWindowBoundary(office, at("2026-12-07T13:00:00Z")), at("2026-12-07T23:00:00Z"));
  const weekend = { days: ["sat" as const], from: "00:00", to: "01:00" };
  assert.equal(nextWindowBoundary(weekend, at("2026-12-07T00:00:00Z")), at("2026-12-12T00:00:00Z"));
  assert.equal(nextBoundary([], 0), undefined);
});

Deno.test("a boundary in the hour a clock skips takes effect at the jump; the repeated hour is read twice", () => {
  // Berlin springs forward 2026-03-29 at 01:00 UTC (02:00 -> 03:00 local): 02:30 never happens.
  const skipped = { from: "02:30", to: "05:00", tz: "Europe/Berlin" };
  assert.equal(nextWindowBoundary(skipped, at("2026-03-29T00:00:00Z")), at("2026-03-29T01:00:00Z"));
  assert.equal(windowOpen(skipped, at("2026-03-29T01:00:00Z")), true, "03:00 local: open");
  // Berlin falls back 2026-10-25 at 01:00 UTC (03:00 -> 02:00 local): 02:00-03:00 happens twice.
  const repeated = { from: "02:00", to: "02:30", tz: "Europe/Berlin" };
  assert.equal(windowOpen(repeated, at("2026-10-25T00:15:00Z")), true, "02:15 CEST");
  assert.equal(windowOpen(repeated, at("2026-10-25T00:45:00Z")), false, "02:45 CEST");
  assert.equal(windowOpen(repeated, at("2026-10-25T01:15:00Z")), true, "02:15 CET, the second reading");
  assert.equal(nextWindowBoundary(repeated, at("2026-10-25T00:45:00Z")), at("2026-10-25T01:00:00Z"));
});

function policyWith(when: string, extra = ""): string {
  return `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: w, version: 1 }
spec:
  network:
    egress:
      deny:
        - { id: first, cidr: 192.0.2.1/32 }
        - { cidr: 192.0.2.2/32, when: ${when} }
        - { cidr: 192.0.2.3/32 }${extra}
`;
}

function problemOf(text: string): string {
  try {
    parsePolicy(text, "p.yaml");
  } catch (error) {
    assert.ok(error instanceof PolicyError);
    return `${error.position?.line}:${error.position?.column}: ${error.message}`;
  }
  return "valid";
}

Deno.test("a rule's when: is checked with FILE:LINE:COL", () => {
  assert.equal(problemOf(policyWith(`{ from: "08:00", to: "18:00", tz: Europe/Berlin }`)), "valid");
  assert.equal(problemOf(policyWith(`{ days: [fri], from: "22:00", to: "06:00" }`)), "valid");
  assert.match(
    problemOf(policyWith(`{ from: "08:00", to: "18:00", tz: Mars/Olympus }`)),
    /^9:.*unknown time zone "Mars\/Olympus"/,
  );
  assert.match(problemOf(policyWith(`{ from: "08:00", to: "08:00" }`)), /^9:.*from and to are the same time/);
  assert.match(
    problemOf(policyWith(`{ days: [mon, fun], from: "08:00", to: "09:00" }`)),
    /^9:.*a day is one of sun, mon/,
  );
  assert.match(
    problemOf(policyWith(`{ from: "24:00", to: "09:00" }`)),
    /^9:.*from must be a time of day HH:MM/,
  );
  assert.match(problemOf(policyWith(`{ from: "8:00", to: "09:00" }`)), /from must be a time of day/);
  assert.match(problemOf(policyWith(`{ to: "09:00" }`)), /from/);
  Deno.env.delete(TEST_SECONDS_ENV);
  assert.match(
    problemOf(policyWith(`{ from: "08:00:05", to: "09:00" }`)),
    /from must be a time of day HH:MM/,
  );
  Deno.env.set(TEST_SECONDS_ENV, "1");
  try {
    assert.equal(problemOf(policyWith(`{ from: "08:00:05", to: "08:00:10" }`)), "valid", "tests only");
  } finally {
    Deno.env.delete(TEST_SECONDS_ENV);
  }
});

Deno.test("compilePolicy() with `now` numbers a closed rule but enforces nothing of it; ids stay the same", () => {
  const policy = parsePolicy(policyWith(`{ from: "08:00", to: "18:00" }`), "p.yaml");
  const all = compilePolicy(policy);
  const morning = compilePolicy(policy, { now: at("2026-12-07T07:00:00Z") });
  const noon = compilePolicy(policy, { now: at("2026-12-07T12:00:00Z") });
  assert.deepEqual(morning.rules, all.rules, "rule ids and names do not move");
  assert.equal(all.egress.length, 3);
  assert.equal(noon.egress.length, 3);
  assert.equal(morning.egress.length, 2);
  assert.deepEqual(morning.windows, [{
    rule: "network.egress.deny[1]",
    area: "egress",
    when: { from: "08:00", to: "18:00" },
    open: false,
  }]);
  assert.equal(noon.windows?.[0]?.open, true);
  assert.equal(
    compilePolicy(parsePolicy(policyWith("{ from: '08:00', to: '09:00' }").replace(/, when.*}/, " }"), "p"))
      .windows,
    undefined,
  );
});
