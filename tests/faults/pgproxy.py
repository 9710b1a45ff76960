#!/usr/bin/python3
"""A TCP proxy in front of PostgreSQL that can lose the answer to a COMMIT (docs/faults.md).

  pgproxy.py --listen-port-file FILE --target HOST:PORT --arm-file ARM --fired-file FIRED

Forwards every connection on 127.0.0.1 (a free port, written to FILE once listening) to the
target, byte for byte. While ARM exists, the first client message that carries a COMMIT
(the Parse of "COMMIT" that libpq sends in pipeline mode) is forwarded to the server, and
then, 0.3 s later (the server has committed by then), both sides of that connection are
closed without passing the server's answer on: the client cannot know whether its
transaction committed. ARM is then removed and FIRED written. Stops on SIGTERM.
Standard library only.
"""

import argparse
import os
import select
import signal
import socket
import sys
import threading
import time

MARK = b"COMMIT\x00"


def pipe(client, server, a):
    """Copies both ways until either side closes."""
    try:
        while True:
            r, _, _ = select.select([client, server], [], [], 1.0)
            for s in r:
                data = s.recv(65536)
                if not data:
                    return
                if s is client:
                    if MARK in data and os.path.exists(a.arm_file):
                        try:
                            os.unlink(a.arm_file)
                        except FileNotFoundError:
                            pass
                        else:
                            server.sendall(data)
                            time.sleep(0.3)
                            with open(a.fired_file, "w") as f:
                                f.write("%f\n" % time.time())
                            return
                    server.sendall(data)
                else:
                    client.sendall(data)
    except OSError:
        return
    finally:
        for s in (client, server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen-port-file", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--arm-file", required=True)
    ap.add_argument("--fired-file", required=True)
    a = ap.parse_args()
    host, port = a.target.rsplit(":", 1)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(a.listen_port_file + ".tmp", "w") as f:
        f.write("%d\n" % ls.getsockname()[1])
    os.rename(a.listen_port_file + ".tmp", a.listen_port_file)
    while True:
        c, _ = ls.accept()
        try:
            s = socket.create_connection((host, int(port)))
        except OSError:
            c.close()
            continue
        threading.Thread(target=pipe, args=(c, s, a), daemon=True).start()


if __name__ == "__main__":
    main()
