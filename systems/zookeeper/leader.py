# Prints NAME when the ZooKeeper server at ADDRESS:2181 says it is the leader (four-letter word
# `srvr`); prints nothing otherwise. Usage: leader.py ADDRESS NAME
import socket, sys

address, name = sys.argv[1], sys.argv[2]
try:
    with socket.create_connection((address, 2181), timeout=1.0) as sock:
        sock.sendall(b"srvr")
        reply = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
except OSError:
    sys.exit(0)
if b"Mode: leader" in reply or b"Mode: standalone" in reply:
    print(name)
