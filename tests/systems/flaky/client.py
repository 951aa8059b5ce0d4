# A stdio client for the toy register that misbehaves on purpose. Usage: client.py MODE
#   die-sometimes: exits without answering every 7th request (of this process)
#   garbage-sometimes: answers every 5th request with a line that is not JSON
#   always-die: writes to stderr and exits at the first request
import json, socket, sys

mode = sys.argv[1]
conn = None
count = 0


def answer(type_, value=None, error=None):
    sys.stdout.write(json.dumps({"type": type_, "value": value, "error": error}) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    count += 1
    if mode == "always-die":
        sys.stderr.write("boom: this client always dies\n")
        sys.exit(3)
    if mode == "die-sometimes" and count % 7 == 0:
        sys.exit(1)
    if mode == "garbage-sometimes" and count % 5 == 0:
        sys.stdout.write("this is not json\n")
        sys.stdout.flush()
        continue
    req = json.loads(line)
    if conn is None:
        try:
            conn = socket.create_connection((req["nodes"][0]["address"], 7100), timeout=1.0).makefile("rw")
        except OSError as e:
            answer("fail", error="connect: %s" % e)
            continue
    try:
        conn.write(json.dumps({"f": req["f"], "key": req["key"], "value": req["value"]}) + "\n")
        conn.flush()
        reply = json.loads(conn.readline())
    except (OSError, ValueError) as e:
        conn = None
        answer("fail" if req["f"] == "read" else "info", error="lost: %s" % e)
        continue
    if reply.get("ok"):
        answer("ok", value=reply.get("value"))
    else:
        answer("fail", error=reply.get("error"))
