"""Opens many TCP connections to a server, sends nothing, and watches who
closes them. Prints one JSON line: how many were opened, refused at connect,
closed by the server (and the longest any lived before that), and still
open when `hold` seconds ran out.

usage: idle_flood.py HOST PORT COUNT HOLD_SECONDS
"""
import json
import selectors
import socket
import sys
import time

host, port, count, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sel = selectors.DefaultSelector()
opened = refused = 0
started = {}
for _ in range(count):
    try:
        s = socket.create_connection((host, port), timeout=5)
    except OSError:
        refused += 1
        continue
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    started[s] = time.monotonic()
    opened += 1

closed = 0
longest = 0.0
deadline = time.monotonic() + hold
while started and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=0.2):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if data:
            # A 503 before the close is fine; keep waiting for the close.
            continue
        longest = max(longest, time.monotonic() - started.pop(s))
        closed += 1
        sel.unregister(s)
        s.close()

print(json.dumps({
    "opened": opened,
    "refused": refused,
    "closed_by_server": closed,
    "longest_life_secs": round(longest, 2),
    "still_open": len(started),
}), flush=True)
