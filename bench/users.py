#!/usr/bin/env python3
"""Creates the users of a `make bench` run through diary-ingest's own API: for each user
POST /v1/users and POST /v1/foods with `Prefer: wait` (so both are applied and on the
replica), and POST /v1/sessions in between. Writes "token food_id" lines to OUT.

    users.py BASE_URL COUNT OUT [PREFIX]

Needs an ingest started with a cheap password hash (DIARY_PWHASH_OPSLIMIT=1,
DIARY_PWHASH_MEMLIMIT=8192) and a worker running. Exits 1 when any user could not be made.
"""
import http.client
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

PASSWORD = "Bench-pass-1!"
local = threading.local()


def conn(base):
    c = getattr(local, "conn", None)
    if c is None:
        u = urlparse(base)
        c = local.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    return c


def call(base, method, path, body, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    for attempt in range(3):
        c = conn(base)
        try:
            c.request(method, path, json.dumps(body), h)
            r = c.getresponse()
            data = r.read()
            return r.status, json.loads(data) if data else {}
        except (OSError, http.client.HTTPException):
            c.close()
            local.conn = None
    raise RuntimeError(f"{method} {path}: no answer")


def make_user(base, prefix, i):
    email = f"{prefix}-{i}@example.org"
    st, b = call(base, "POST", "/v1/users",
                 {"email": email, "name": f"Bench {i}", "password": PASSWORD},
                 {"Prefer": "wait=20"})
    if st != 201:
        raise RuntimeError(f"register {email}: {st} {b}")
    st, b = call(base, "POST", "/v1/sessions", {"email": email, "password": PASSWORD})
    if st != 201:
        raise RuntimeError(f"log in {email}: {st} {b}")
    token = b["token"]
    st, b = call(base, "POST", "/v1/foods",
                 {"name": "Rolled oats", "calories_per_100g": 379, "protein_per_100g": 13.2,
                  "carbs_per_100g": 67.7, "fat_per_100g": 6.5},
                 {"Prefer": "wait=20", "Authorization": "Bearer " + token})
    if st != 201:
        raise RuntimeError(f"food of {email}: {st} {b}")
    return f"{token} {b['id']}"


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    base, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    prefix = sys.argv[4] if len(sys.argv) > 4 else "bench"
    with ThreadPoolExecutor(max_workers=16) as ex:
        try:
            lines = list(ex.map(lambda i: make_user(base, prefix, i), range(count)))
        except RuntimeError as e:
            print(f"users: {e}", file=sys.stderr)
            return 1
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
