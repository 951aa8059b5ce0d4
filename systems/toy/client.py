# The toy register's stdio client (docs/systems.md): one JSON request per line on stdin, one JSON
# answer per line on stdout. It talks to n1 only (the toy is a single copy), over the server's own
# line protocol.
import json, socket, sys

conn = None


def answer(type_, value=None, error=None):
    sys.stdout.write(json.dumps({"type": type_, "value": value, "error": error}) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    req = json.loads(line)
    if conn is None:
        try:
            sock = socket.create_connection((req["nodes"][0]["address"], 7100), timeout=1.0)
            conn = sock.makefile("rw")
        except OSError as e:
            answer("fail", error="connect: %s" % e)  # nothing was sent: it surely did not happen
            continue
    try:
        conn.write(json.dumps({"f": req["f"], "key": req["key"], "value": req["value"]}) + "\n")
        conn.flush()
        reply = json.loads(conn.readline())
    except (OSError, ValueError) as e:
        conn = None
        # A read changes nothing; a write or cas may have happened.
        answer("fail" if req["f"] == "read" else "info", error="lost: %s" % e)
        continue
    if reply.get("ok"):
        answer("ok", value=reply.get("value"))
    else:
        answer("fail", error=reply.get("error"))
