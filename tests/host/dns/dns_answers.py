# DNS answers learned in the kernel (tests/host/dns_learn_test.ts): run in a fresh network namespace inside
# the test cgroup. A resolver of the script's own on 127.0.0.1:53 answers each query with what the case
# crafts; right after the answer, the script connects to the answered address. Prints one JSON object: each
# case's connect results.
import json, random, socket, struct, sys, threading, time

PORT = 8053
N = int(sys.argv[1])

def wire(name):
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"

def query(qid, name):
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire(name) + struct.pack(">HH", 1, 1)

def answer(qid, name, records, flags=0x8180):
    msg = struct.pack(">HHHHHH", qid, flags, 1, len(records), 0, 0) + wire(name) + struct.pack(">HH", 1, 1)
    for owner, rtype, ttl, rdata in records:
        msg += owner + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata
    return msg

QUESTION = b"\xc0\x0c"  # a pointer to the question's name
A, CNAME = 1, 5

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", PORT))
listener.listen(4096)

def accept():
    while True:
        conn, _ = listener.accept()
        conn.close()

threading.Thread(target=accept, daemon=True).start()
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 53))
server6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
server6.bind(("::1", 53))
foreign = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
foreign.bind(("127.0.0.2", 53))

tcp_server = socket.socket()
tcp_server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp_server.bind(("127.0.0.1", 53))
tcp_server.listen(64)

def read_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data

TCP_ANSWERS = {"tcp1.test.example": "127.7.0.1", "split.test.example": "127.7.0.2", "evil.test.example": "127.7.0.3"}

def serve_tcp(conn):
    """One query over TCP: answered in one segment, or (split.test.example) its length and message apart."""
    try:
        conn.settimeout(3)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        size = struct.unpack(">H", read_exactly(conn, 2))[0]
        data = read_exactly(conn, size)
        name = ".".join(label.decode() for label in labels(data[12:]))
        msg = answer(struct.unpack(">H", data[:2])[0], name, [a_record(TCP_ANSWERS[name])])
        if name.startswith("split."):
            conn.sendall(struct.pack(">H", len(msg)))
            time.sleep(0.2)
            conn.sendall(msg)
        else:
            conn.sendall(struct.pack(">H", len(msg)) + msg)
        time.sleep(0.5)
    except (OSError, EOFError):
        pass
    finally:
        conn.close()

def labels(data):
    out, i = [], 0
    while data[i]:
        out.append(data[i + 1 : i + 1 + data[i]])
        i += 1 + data[i]
    return out

def accept_tcp():
    while True:
        conn, _ = tcp_server.accept()
        threading.Thread(target=serve_tcp, args=(conn,), daemon=True).start()

threading.Thread(target=accept_tcp, daemon=True).start()

def ask_tcp(name):
    """A query over TCP, length and message in one segment: "answered" or "no answer"."""
    client = socket.socket()
    client.settimeout(2)
    try:
        client.connect(("127.0.0.1", 53))
        q = query(random.randrange(1, 65536), name)
        client.sendall(struct.pack(">H", len(q)) + q)
        size = struct.unpack(">H", read_exactly(client, 2))[0]
        read_exactly(client, size)
        return "answered"
    except (OSError, EOFError):
        return "no answer"
    finally:
        client.close()

def connect(addr):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((addr, PORT))
        return "connected"
    except PermissionError:
        return "EPERM"
    except OSError as error:
        return str(error)
    finally:
        s.close()

def ask(name, respond):
    """Sends a query for `name`, lets `respond(query_id, client, name)` answer, waits for the answer."""
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(2)
    qid = random.randrange(1, 65536)
    client.sendto(query(qid, name), ("127.0.0.1", 53))
    data, where = server.recvfrom(4096)
    respond(struct.unpack(">H", data[:2])[0], where, name)
    try:
        client.recv(4096)
        got = "answered"
    except socket.timeout:
        got = "no answer"
    client.close()
    return got

def a_record(addr, ttl=300, owner=QUESTION):
    return (owner, A, ttl, socket.inet_aton(addr))

def answers_with(records, flags=0x8180, cut=0, question=None, sender=None):
    def respond(qid, where, name):
        msg = answer(qid, question or name, records, flags)
        (sender or server).sendto(msg[: len(msg) - cut] if cut else msg, where)
    return respond

out = {}
# A fresh name and address each time, connected to at once.
loop = []
for i in range(N):
    addr = "127.1.%d.%d" % (i // 250, i % 250 + 1)
    ask("h%d.test.example" % i, answers_with([a_record(addr)]))
    loop.append(connect(addr))
out["loop"] = {result: loop.count(result) for result in set(loop)}
out["never"] = connect("127.2.0.1")
# Names of every shape the parser reads in steps: labels longer than a step's 8 bytes (mixed case, 63
# bytes), 13 labels, under a longer wildcard that denies (3 and 8 labels in its domain), and a wildcard's
# domain itself (not covered by it: by the shorter one that allows).
shapes = [
    ("Eight-Plus-Bytes-Label-Mixed-Case.test.example", "127.8.0.1"),
    ("a" * 63 + ".test.example", "127.8.0.2"),
    ("a.b.c.d.e.f.g.h.i.j.k.test.example", "127.8.0.3"),
    ("q.No.Test.example", "127.8.0.4"),
    ("m.x1.x2.x3.x4.x5.x6.test.example", "127.8.0.5"),
    ("x1.x2.x3.x4.x5.x6.test.example", "127.8.0.6"),
]
out["shapes"] = []
for name, addr in shapes:
    ask(name, answers_with([a_record(addr)]))
    out["shapes"].append(connect(addr))
# A CNAME chain from a name no rule covers to one a wildcard covers; and one to a name none covers.
target = wire("w1.test.example")
offset = 12 + len(wire("alias.other.example")) + 4 + 2 + 10  # the CNAME's data
ask("alias.other.example", answers_with([
    (QUESTION, CNAME, 300, target),
    a_record("127.3.0.1", owner=struct.pack(">H", 0xC000 | offset)),
]))
out["cname"] = connect("127.3.0.1")
ask("alias2.other.example", answers_with([
    (QUESTION, CNAME, 300, wire("x.elsewhere.example")),
    a_record("127.3.0.2", owner=wire("x.elsewhere.example")),
]))
out["cname_uncovered"] = connect("127.3.0.2")
# An A record for a name outside the chain is not the name's.
ask("o1.test.example", answers_with([a_record("127.3.0.3", owner=wire("other.test.example"))]))
out["outside_chain"] = connect("127.3.0.3")
# Truncated (TC), cut short, a compression pointer to itself: nothing learned.
ask("tc.test.example", answers_with([a_record("127.5.0.1")], flags=0x8380))
out["truncated"] = connect("127.5.0.1")
ask("cut.test.example", answers_with([a_record("127.5.0.2")], cut=3))
out["cut"] = connect("127.5.0.2")
loop_offset = 12 + len(wire("ptr.test.example")) + 4
ask("ptr.test.example", answers_with([a_record("127.5.0.3", owner=struct.pack(">H", 0xC000 | loop_offset))]))
out["pointer_loop"] = connect("127.5.0.3")
# An answer to a query never asked; an answer to another question; an answer from another server.
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.bind(("127.0.0.1", 0))
server.sendto(answer(4242, "u1.test.example", [a_record("127.4.0.1")]), client.getsockname())
client.settimeout(2)
client.recv(4096)
client.close()
out["unsolicited"] = connect("127.4.0.1")
ask("q1.test.example", answers_with([a_record("127.4.0.2")], question="q2.test.example"))
out["other_question"] = connect("127.4.0.2")
ask("f1.test.example", answers_with([a_record("127.4.0.3")], sender=foreign))
out["foreign"] = connect("127.4.0.3")
# Over TCP: the whole answer in one segment is learned; one whose length and message come apart is not; a
# query for a name a rule denies is dropped (enforce) or reported (audit).
out["tcp_query"] = ask_tcp("tcp1.test.example")
out["tcp"] = connect("127.7.0.1")
out["tcp_split_query"] = ask_tcp("split.test.example")
out["tcp_split"] = connect("127.7.0.2")
out["tcp_denied_query"] = ask_tcp("evil.test.example")
# Over IPv6: a query to ::1 and its answer, learned as over IPv4.
client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
client.settimeout(2)
client.sendto(query(random.randrange(1, 65536), "v6.test.example"), ("::1", 53))
data, where = server6.recvfrom(4096)
server6.sendto(answer(struct.unpack(">H", data[:2])[0], "v6.test.example", [a_record("127.9.0.1")]), where)
client.recv(4096)
client.close()
out["ipv6_transport"] = connect("127.9.0.1")
# A known address answered again. Under the same pattern its entry stays and keeps the later expiry: TTL 1,
# then 300, then 1 again (checked after the sleep below). Under another pattern (a wildcard that denies), the
# address is that pattern's from then on.
for ttl in (1, 300, 1):
    ask("k1.test.example", answers_with([a_record("127.6.0.3", ttl=ttl)]))
ask("r1.test.example", answers_with([a_record("127.6.0.4")]))
out["known_allowed"] = connect("127.6.0.4")
ask("r.no.test.example", answers_with([a_record("127.6.0.4")]))
out["known_other_pattern"] = connect("127.6.0.4")
# TTL 0 under a floor of 1 s: kept for the floor's second, so a connect right after the answer goes.
ask("z1.test.example", answers_with([a_record("127.6.0.2", ttl=0)]))
out["ttl_zero_floor"] = connect("127.6.0.2")
# TTL 1 under a floor of 1 s: learned, then expired.
ask("t1.test.example", answers_with([a_record("127.6.0.1", ttl=1)]))
out["ttl_fresh"] = connect("127.6.0.1")
time.sleep(2.5)
out["ttl_expired"] = connect("127.6.0.1")
out["known_extended"] = connect("127.6.0.3")
print(json.dumps(out))
