#!/usr/bin/python3
"""Load generator for the fault tests (tests/e2e/test_faults.sh, docs/faults.md).

Standard library only. Two steps:

  load.py setup --url URL --users N --foods F --tag TAG --out users.json
      registers N users (Prefer: wait, an Idempotency-Key per registration), logs each in and
      creates F foods per user (Prefer: wait). Every step is retried until it succeeds or the
      deadline passes, so setup is itself safe to run while something misbehaves.

  load.py run --url URL --users users.json --writes W --threads T --out acks.jsonl
      sends W `PUT /v1/diary/{date}/{meal}/{food_id}` writes per user, with amounts it picks.
      One user's writes go one after the other: the next is sent only once the previous one
      was acknowledged (202; or 200/201 when the retried key's event is applied already and
      ingest answers its outcome). Many users run in parallel (T threads, each owning a share of
      the users and taking them in turn). Every write carries an Idempotency-Key, so a write
      that got no acknowledgement (503 while the broker is away, 504, a dropped connection, a
      client timeout) is retried as the same event until it is acknowledged. Each
      acknowledgement is appended to acks.jsonl at once (one JSON object per line: user, seq,
      key, amount, event_id, position, attempts), so a test can watch progress with `wc -l`
      and inject its fault at a chosen point. Unacknowledged attempts go to
      acks.jsonl.unacked (with their key and amount: check.py accepts, once, an applied write
      that never got its acknowledgement). Exit status 0 when every write was acknowledged
      before the deadline.

The expected outcome is computed by check.py from users.json and acks.jsonl.
"""

import argparse
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse

MEALS = ("breakfast", "lunch", "dinner", "snack")
DATES = ("2026-03-01", "2026-03-02", "2026-03-03")
PASSWORD = "Fault-T3st!pw"


class Client:
    """One keep-alive HTTP connection to ingest; reconnects after any error."""

    def __init__(self, url, timeout):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        """(status, headers dict lower-cased, body bytes); status 0 on a transport error."""
        h = {"Accept": "application/json"}
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                hdrs = {k.lower(): v for k, v in r.getheaders()}
                if hdrs.get("connection", "").lower() == "close":
                    self.close()
                return r.status, hdrs, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                # A keep-alive connection the server closed meanwhile: once more on a new one.
                self.close()
                err = e
                continue
            except (OSError, http.client.HTTPException) as e:
                self.close()
                return 0, {}, str(e).encode()
        return 0, {}, str(err).encode()

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None


def retry_until(deadline, what, fn):
    """Calls fn() until it returns a value other than None; backoff 0.1 .. 2 s."""
    backoff = 0.1
    while True:
        v = fn()
        if v is not None:
            return v
        if time.monotonic() > deadline:
            raise SystemExit("load.py: gave up on %s" % what)
        time.sleep(backoff)
        backoff = min(backoff * 2, 2.0)


def setup(a):
    deadline = time.monotonic() + a.deadline
    users = [None] * a.users
    errors = []
    lock = threading.Lock()

    def one(i, c):
        email = "%s-%04d@faults.example" % (a.tag, i)
        body = json.dumps({"email": email, "name": "Fault %d" % i, "password": PASSWORD})

        def register():
            s, _, b = c.request("POST", "/v1/users", body,
                                {"Prefer": "wait=20", "Idempotency-Key": "reg-%s-%d" % (a.tag, i)})
            if s in (200, 201):
                return json.loads(b)["id"]
            if s in (0, 202, 500, 503, 504):
                return None  # not applied yet or not acknowledged: the same key again
            raise SystemExit("register %s: %d %s" % (email, s, b[:300]))

        uid = retry_until(deadline, "registering " + email, register)

        def login():
            s, _, b = c.request("POST", "/v1/sessions", json.dumps({"email": email, "password": PASSWORD}))
            if s == 201:
                return json.loads(b)["token"]
            if s in (0, 401, 500, 503, 504):
                return None  # 401: the replica has not caught up yet
            raise SystemExit("log in %s: %d %s" % (email, s, b[:300]))

        token = retry_until(deadline, "logging in " + email, login)
        foods = []
        for f in range(a.foods):
            fb = json.dumps({"name": "Food %d" % f, "calories_per_100g": 100 + f, "protein_per_100g": 5,
                             "carbs_per_100g": 15, "fat_per_100g": 3})

            def food():
                s, _, b = c.request("POST", "/v1/foods", fb,
                                    {"Authorization": "Bearer " + token, "Prefer": "wait=20",
                                     "Idempotency-Key": "food-%s-%d-%d" % (a.tag, i, f)})
                if s in (200, 201):
                    return json.loads(b)["id"]
                if s in (0, 202, 500, 503, 504):
                    return None
                raise SystemExit("food for %s: %d %s" % (email, s, b[:300]))

            foods.append(retry_until(deadline, "creating a food for " + email, food))
        users[i] = {"i": i, "email": email, "user_id": uid, "token": token, "foods": foods}

    def runner(t):
        c = Client(a.url, a.timeout)
        try:
            for i in range(t, a.users, a.threads):
                one(i, c)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            with lock:
                errors.append(str(e))
        finally:
            c.close()

    threads = [threading.Thread(target=runner, args=(t,)) for t in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("load.py setup: %s" % errors[0], file=sys.stderr)
        return 1
    with open(a.out + ".tmp", "w") as f:
        json.dump({"tag": a.tag, "users": users}, f)
    os.rename(a.out + ".tmp", a.out)
    return 0


def plan(users, writes, seed):
    """Every user's writes, decided up front: (date, meal, food_id, amount string)."""
    rnd = random.Random(seed)  # a str seed is hashed the same way by every run
    out = {}
    for u in users:
        # A handful of keys per user, so that most keys are written several times (versions).
        keys = [(rnd.choice(DATES), rnd.choice(MEALS), rnd.choice(u["foods"])) for _ in range(4)]
        ws = []
        for _ in range(writes):
            d, m, f = rnd.choice(keys)
            cents = rnd.randint(100, 99999)
            amount = "%d" % (cents // 100) if rnd.random() < 0.5 else "%d.%02d" % (cents // 100, cents % 100)
            if amount.endswith("0") and "." in amount:
                amount = amount.rstrip("0").rstrip(".")
            ws.append((d, m, f, amount))
        out[u["user_id"]] = ws
    return out


def run(a):
    with open(a.users) as f:
        users = json.load(f)["users"]
    writes = plan(users, a.writes, "%s/%s" % (a.seed, a.tag))
    deadline = time.monotonic() + a.deadline
    lock = threading.Lock()
    acks = open(a.out, "a", buffering=1)
    unacked = open(a.out + ".unacked", "a", buffering=1)
    errors = []
    stats = {"acked": 0, "unacked_attempts": 0}
    pace = {"next": time.monotonic()}

    def paced():
        """With --rate, waits for this send's slot: the load spans a known time whatever the
        machine's speed, so that a fault lands in the middle of it."""
        if a.rate <= 0:
            return
        with lock:
            slot = max(pace["next"], time.monotonic())
            pace["next"] = slot + 1.0 / a.rate
        d = slot - time.monotonic()
        if d > 0:
            time.sleep(d)

    def runner(t):
        c = Client(a.url, a.timeout)
        mine = users[t::a.threads]
        nxt = {u["user_id"]: 0 for u in mine}
        attempts = {u["user_id"]: 0 for u in mine}
        retry_at = {u["user_id"]: 0.0 for u in mine}
        backoff = {u["user_id"]: 0.1 for u in mine}
        try:
            while True:
                todo = [u for u in mine if nxt[u["user_id"]] < a.writes]
                if not todo:
                    return
                if time.monotonic() > deadline:
                    raise SystemExit("deadline passed with %d users unfinished" % len(todo))
                now = time.monotonic()
                ready = [u for u in todo if retry_at[u["user_id"]] <= now]
                if not ready:
                    time.sleep(max(0.01, min(retry_at[u["user_id"]] for u in todo) - now))
                    continue
                for u in ready:
                    uid = u["user_id"]
                    seq = nxt[uid]
                    d, m, food, amount = writes[uid][seq]
                    attempts[uid] += 1
                    paced()
                    path = "/v1/diary/%s/%s/%s" % (d, m, food)
                    t0 = time.time()
                    s, h, b = c.request("PUT", path, '{"amount":%s}' % amount,
                                        {"Authorization": "Bearer " + u["token"],
                                         "Idempotency-Key": "%s-w-%d" % (a.tag, seq),
                                         "X-Request-Id": "%s-%d-%d-%d" % (a.tag, u["i"], seq, attempts[uid])})
                    body = None
                    if s in (200, 201, 202):
                        try:
                            body = json.loads(b)
                        except ValueError:
                            body = None
                    # 202: the broker has it. 200/201: a retried key whose event is applied
                    # already, answered with its outcome (Idempotent-Replayed). Either way a
                    # promise, with the event id and its position.
                    if body is not None and body.get("event_id") and body.get("position"):
                        rec = {"user": uid, "i": u["i"], "seq": seq, "date": d, "meal": m, "food": food,
                               "amount": amount, "event_id": body["event_id"], "position": body["position"],
                               "status": s, "attempts": attempts[uid], "t": round(t0, 3)}
                        with lock:
                            acks.write(json.dumps(rec) + "\n")
                            stats["acked"] += 1
                        nxt[uid] = seq + 1
                        attempts[uid] = 0
                        backoff[uid] = 0.1
                        retry_at[uid] = 0.0
                    elif s in (0, 500, 502, 503, 504):
                        # No promise was made: the same write (same key, same event) again later.
                        with lock:
                            unacked.write(json.dumps({"user": uid, "seq": seq, "date": d, "meal": m, "food": food,
                                                      "amount": amount, "status": s,
                                                      "detail": b[:200].decode("utf-8", "replace"),
                                                      "t": round(t0, 3)}) + "\n")
                            stats["unacked_attempts"] += 1
                        retry_at[uid] = time.monotonic() + backoff[uid]
                        backoff[uid] = min(backoff[uid] * 2, 2.0)
                    else:
                        raise SystemExit("PUT %s for user %d: unexpected %d %s" % (path, u["i"], s, b[:300]))
        except BaseException as e:  # noqa: BLE001
            with lock:
                errors.append(str(e))
        finally:
            c.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=runner, args=(t,)) for t in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acks.close()
    unacked.close()
    el = time.monotonic() - t0
    print("load: %d writes acknowledged in %.1f s (%.0f/s), %d unacknowledged attempts retried"
          % (stats["acked"], el, stats["acked"] / el if el else 0, stats["unacked_attempts"]), file=sys.stderr)
    if errors:
        print("load.py run: %s" % errors[0], file=sys.stderr)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--url", required=True)
    s.add_argument("--users", type=int, default=200)
    s.add_argument("--foods", type=int, default=2)
    s.add_argument("--tag", required=True)
    s.add_argument("--threads", type=int, default=16)
    s.add_argument("--timeout", type=float, default=40)
    s.add_argument("--deadline", type=float, default=120)
    s.add_argument("--out", required=True)
    r = sub.add_parser("run")
    r.add_argument("--url", required=True)
    r.add_argument("--users", required=True)
    r.add_argument("--writes", type=int, default=15)
    r.add_argument("--threads", type=int, default=24)
    r.add_argument("--seed", default="1", help="with --tag, chooses the keys and amounts")
    r.add_argument("--rate", type=float, default=0, help="writes per second at most (0: no limit)")
    r.add_argument("--tag", default="w")
    r.add_argument("--timeout", type=float, default=40)
    r.add_argument("--deadline", type=float, default=180)
    r.add_argument("--out", required=True)
    a = p.parse_args()
    return setup(a) if a.cmd == "setup" else run(a)


if __name__ == "__main__":
    sys.exit(main())
