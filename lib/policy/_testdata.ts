/** Policies shared by the tests of this folder. */

/** The example of SPEC section 3, verbatim. */
export const SPEC_EXAMPLE = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: web-baseline
  version: 7                  # integer >= 1; signed bundles must increase it
  notAfter: 2027-01-01T00:00:00Z   # optional expiry
spec:
  mode: enforce               # audit (default) | enforce
  scope:
    cgroups: [/system.slice/canary.slice]   # optional: rules apply only to tasks in these subtrees
    exempt: [/system.slice/sshd.service]    # never affected
  files:
    deny:
      - { id: shadow, path: /etc/shadow }
      - { path: /srv/keys, recursive: true } # every file under it at apply time
  exec:
    denyMemfd: true           # optional: no fileless exec (memfd + fexecve)
    deny:
      - { id: no-netcat, path: /usr/bin/nc.openbsd }
  network:
    egress:
      denyPacketSockets: false  # optional: refuse AF_PACKET sockets in scope (DHCP clients need them)
      deny:
        - { id: imds, cidr: 169.254.169.254/32 }
        - { cidr: 10.0.0.0/8, ports: [22, 23], protocol: tcp }
        - { cidr: "2001:db8::/32" }
        - { port: 25, protocol: tcp }
      allow:
        - { cidr: 10.1.2.3/32, ports: [22], protocol: tcp }
      users:
        - { uid: 1000, allowPorts: [80, 443] }   # everything else denied for this uid
        - { gid: 27, denyPorts: [22, 23] }       # these ports denied for this group
    bind:
      deny: [{ port: 6667, protocol: tcp }]
    ingress:
      interfaces: [eth0]
      default: pass           # pass | drop (allowlist)
      failsafe: { ports: [22], protocol: tcp }   # never dropped: guards against lock-out
      allow: [{ cidr: 10.0.0.0/8, ports: [22], protocol: tcp }]
      deny: [{ cidr: 203.0.113.0/24 }]
`;

/** The smallest valid policy, with `spec` lines appended by the caller (indented two spaces). */
export function minimal(specLines = ""): string {
  return `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata:\n  name: t\n  version: 1\nspec:\n${
    specLines || "  mode: audit\n"
  }`;
}
