# A stdio client for one Redis server (its home node), speaking RESP by hand: read = GET,
# write = SET, values stored as JSON text. For the stdio-overhead benchmark only.
import json, socket, sys

conn = None


def command(*args):
    out = b"*%d\r\n" % len(args)
    for arg in args:
        data = arg.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    conn.sendall(out)
    header = reader.readline()
    if header[:1] == b"$":
        size = int(header[1:])
        return None if size < 0 else reader.read(size + 2)[:-2].decode()
    if header[:1] == b"-":
        raise RuntimeError(header.decode().strip())
    return header.decode().strip()


for line in sys.stdin:
    req = json.loads(line)
    try:
        if conn is None:
            conn = socket.create_connection((req["node"]["address"], 6379), timeout=1.0)
            reader = conn.makefile("rb")
        if req["f"] == "read":
            text = command("GET", "fl:%s" % req["key"])
            answer = {"type": "ok", "value": None if text is None else json.loads(text)}
        else:
            command("SET", "fl:%s" % req["key"], json.dumps(req["value"]))
            answer = {"type": "ok"}
    except (OSError, RuntimeError, ValueError) as e:
        conn = None
        answer = {"type": "fail" if req["f"] == "read" else "info", "error": repr(e)}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
