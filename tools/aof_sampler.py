#!/usr/bin/env python3
"""Sample Redis nodes every INTERVAL s while a run goes on, to explain throughput swings:
per node, XADD calls (INFO commandstats), whether an AOF rewrite or an RDB save is in progress
and the delayed fsyncs (INFO persistence). Writes CSV lines to stdout:
  t_s,port,xadd_calls,aof_rewrite_in_progress,rdb_bgsave_in_progress,aof_delayed_fsync
Stops after DURATION s, or when interrupted. Only talks to 127.0.0.1.

Usage: aof_sampler.py --ports 7601,7602,... [--interval 0.1] [--duration 90]
"""

import argparse
import socket
import sys
import time


def recv(sock, n):
    data = sock.recv(n)
    if not data:
        raise ConnectionError("the node closed the connection")
    return data


def info(sock, section):
    sock.sendall(f"*2\r\n$4\r\nINFO\r\n${len(section)}\r\n{section}\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n"):
        head += recv(sock, 1)
    if not head.startswith(b"$"):
        raise ConnectionError(f"unexpected reply {head!r}")
    n = int(head[1:-2])
    body = b""
    while len(body) < n + 2:
        body += recv(sock, n + 2 - len(body))
    return body[:-2].decode(errors="replace")


def field(text, prefix, key=None):
    for line in text.splitlines():
        if line.startswith(prefix):
            v = line.split(":", 1)[1]
            if key is None:
                return v.strip()
            for part in v.split(","):
                k, _, x = part.partition("=")
                if k == key:
                    return x
    return "0"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ports", required=True)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--duration", type=float, default=90)
    a = p.parse_args()
    ports = [int(x) for x in a.ports.split(",")]
    socks = {}
    t0 = time.time()
    print("t_s,port,xadd_calls,aof_rewrite_in_progress,rdb_bgsave_in_progress,aof_delayed_fsync")
    try:
        while time.time() - t0 < a.duration:
            for port in ports:
                try:
                    if port not in socks:
                        socks[port] = socket.create_connection(("127.0.0.1", port), timeout=1)
                    s = socks[port]
                    stats, pers = info(s, "commandstats"), info(s, "persistence")
                except (OSError, ValueError):
                    # ConnectionError is an OSError: a node that went away is tried again.
                    dead = socks.pop(port, None)
                    if dead is not None:
                        dead.close()
                    continue
                print(f"{time.time():.3f},{port},{field(stats, 'cmdstat_xadd', 'calls')},"
                      f"{field(pers, 'aof_rewrite_in_progress')},{field(pers, 'rdb_bgsave_in_progress')},"
                      f"{field(pers, 'aof_delayed_fsync')}", flush=True)
            time.sleep(a.interval if socks else max(a.interval, 0.5))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
