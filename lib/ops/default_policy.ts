/**
 * The policy `run` applies when none is configured (no `--policy`, no `<config-dir>/policy.yaml`, nothing
 * applied before): audit only, so it denies nothing, and made of what every Linux host does every minute,
 * so that a new user sees real events at once: reads of the account and sudo databases (every `ls -l`,
 * `ps`, cron job and login reads /etc/passwd), runs of network and inspection tools (`cat`, `id`, `uname` and `ps` run in scripts all the time), DNS lookups, web and SSH
 * connections, and the cloud metadata address. Paths a host may lack are optional. `run --enforce` refuses
 * it: it is a starting point to watch, never one to enforce.
 */

export const DEFAULT_POLICY_SOURCE = "<embedded default audit policy>";

export const DEFAULT_POLICY = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: aegisbpf-default-audit
  version: 1
spec:
  mode: audit
  files:
    deny:
      - { id: read-passwd, path: /etc/passwd, optional: true }
      - { id: read-shadow, path: /etc/shadow, optional: true }
      - { id: read-group, path: /etc/group, optional: true }
      - { id: read-sudoers, path: /etc/sudoers, optional: true }
      - { id: read-ssh-host-keys, path: /etc/ssh/ssh_host_ed25519_key, optional: true }
  exec:
    deny:
      - { id: exec-curl, path: /usr/bin/curl, optional: true }
      - { id: exec-wget, path: /usr/bin/wget, optional: true }
      - { id: exec-nc, path: /bin/nc, optional: true }
      - { id: exec-ssh, path: /usr/bin/ssh, optional: true }
      - { id: exec-sudo, path: /usr/bin/sudo, optional: true }
      - { id: exec-su, path: /bin/su, optional: true }
      - { id: exec-id, path: /usr/bin/id, optional: true }
      - { id: exec-uname, path: /bin/uname, optional: true }
      - { id: exec-ps, path: /bin/ps, optional: true }
      - { id: exec-cat, path: /bin/cat, optional: true }
  network:
    egress:
      deny:
        - { id: dns-udp, port: 53, protocol: udp }
        - { id: dns-tcp, port: 53, protocol: tcp }
        - { id: http, port: 80, protocol: tcp }
        - { id: https, port: 443, protocol: tcp }
        - { id: ssh-out, port: 22, protocol: tcp }
        - { id: cloud-metadata, cidr: 169.254.169.254/32 }
`;
