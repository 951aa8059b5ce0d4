# faultline's stdio client for ZooKeeper (docs/systems.md), with kazoo (Debian python3-kazoo).
# One JSON request per line on stdin, one JSON answer per line on stdout. It connects to its home
# node only (the request's "node"), so a plain read is served by that server; with --reads sync
# every read (and the read a CAS starts with) is preceded by sync().
#
# A register is the znode /faultline/KEY holding the value's JSON text. write = set (create when
# absent); cas [from, to] = read, compare, then set with the version read (create when from is
# null), so a concurrent change makes the set fail with BadVersion: definite, `fail`.
import argparse, json, logging, sys

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

parser = argparse.ArgumentParser()
parser.add_argument("--reads", choices=["plain", "sync"], default="plain")
parser.add_argument("--timeout", type=float, default=1.0)
args = parser.parse_args()
logging.basicConfig(stream=sys.stderr, level=logging.WARNING)

zk = None


def answer(type_, value=None, error=None):
    sys.stdout.write(json.dumps({"type": type_, "value": value, "error": error}) + "\n")
    sys.stdout.flush()


def connect(address):
    client = KazooClient(hosts="%s:2181" % address, timeout=4.0, connection_retry=None, command_retry=None)
    client.start(timeout=args.timeout)
    return client


def read(path):
    if args.reads == "sync":
        zk.sync_async(path).get(timeout=args.timeout)
    try:
        data, stat = zk.get_async(path).get(timeout=args.timeout)
    except NoNodeError:
        return None, None
    return json.loads(data.decode()), stat.version


def write(path, value):
    data = json.dumps(value).encode()
    try:
        zk.set_async(path, data).get(timeout=args.timeout)
    except NoNodeError:
        try:
            zk.create_async(path, data, makepath=True).get(timeout=args.timeout)
        except NodeExistsError:
            zk.set_async(path, data).get(timeout=args.timeout)


def cas(path, old, new):
    current, version = read(path)
    if current != old:
        return False
    data = json.dumps(new).encode()
    try:
        if version is None:
            zk.create_async(path, data, makepath=True).get(timeout=args.timeout)
        else:
            zk.set_async(path, data, version=version).get(timeout=args.timeout)
    except (BadVersionError, NodeExistsError, NoNodeError):
        return False
    return True


for line in sys.stdin:
    request = json.loads(line)
    f, path = request["f"], "/faultline/%s" % request["key"]
    if zk is None:
        try:
            zk = connect(request["node"]["address"])
        except Exception as e:  # nothing was sent: the op surely did not happen
            zk = None
            answer("fail", error="connect: %r" % e)
            continue
    try:
        if f == "read":
            answer("ok", value=read(path)[0])
        elif f == "write":
            write(path, request["value"])
            answer("ok")
        elif f == "cas":
            old, new = request["value"]
            if cas(path, old, new):
                answer("ok")
            else:
                answer("fail", error="cas-mismatch")
        else:
            answer("fail", error="unknown op %s" % f)
    except (KazooTimeoutError, Exception) as e:
        # A read changes nothing; a write or a CAS may have happened.
        answer("fail" if f == "read" else "info", error=repr(e))
        if not zk.connected:
            try:
                zk.stop()
                zk.close()
            finally:
                zk = None
