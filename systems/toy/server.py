# A toy single-copy register server, for testing the harness itself without a real distributed
# system: every node runs it, but clients only talk to n1, which persists each write with fsync
# before answering (so kills lose nothing). With bug `lose-writes` it keeps state in memory only,
# so a kill makes reads go back in time: the checker must call that invalid.
# Usage: server.py HOST PORT DATA_DIR BUG
import json, os, socketserver, sys, threading

lock = threading.Lock()
listen_host, port, data_dir, bug = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
path = os.path.join(data_dir, "state.json")
state = {}
if bug != "lose-writes" and os.path.exists(path):
    state = json.load(open(path))


def persist():
    if bug == "lose-writes":
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    # The rename is durable only once the directory is fsynced (a power loss would undo it).
    d = os.open(data_dir, os.O_RDONLY)
    os.fsync(d)
    os.close(d)


def apply(req):
    k, f = str(req.get("key")), req["f"]
    if f == "read":
        return {"ok": True, "value": state.get(k)}
    if f == "write":
        state[k] = req["value"]
        persist()
        return {"ok": True}
    if f == "cas":
        if state.get(k) == req["value"][0]:
            state[k] = req["value"][1]
            persist()
            return {"ok": True}
        return {"ok": False, "error": "cas-mismatch"}
    return {"ok": False, "error": "unknown-f"}


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            req = json.loads(line)
            with lock:
                resp = apply(req)
            self.wfile.write((json.dumps(resp) + "\n").encode())
            self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


print("toy register listening on", listen_host, port, flush=True)
os.makedirs(data_dir, exist_ok=True)
Server((listen_host, port), Handler).serve_forever()
