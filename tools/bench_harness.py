#!/usr/bin/env python3
"""`make bench-harness`: brokerbench's client side against the reference tools, in one run.

Starts its own local clusters with brokerbench (`cluster up`, ports in tools/bench-harness.toml),
then, alternating A then B for several rounds, measures produce-only throughput and client CPU:
- Redis: `redis-benchmark` sending the same XADD (1 connection, pipeline depth = the window)
  straight to the master that owns the stream's slot, against `brokerbench produce --count`;
- RabbitMQ: tools/amqp_publisher.py (pika, perf-test's confirm window) against
  `brokerbench produce --rabbitmq --count`, both publishing persistent messages with confirms to
  a quorum queue led by node 1, over one connection to node 1;
and, as a third side, `brokerbench produce --floor` (the backend's producer driven by a minimal
batch loop, without the load engine), which splits brokerbench's CPU into backend and engine.

CPU is utime + stime from /proc/<pid>/stat of each client process, read once it has exited and
before it is reaped. Every process started here is stopped at the end (also on Ctrl-C or
SIGTERM); every client run is bounded in count and time; all traffic goes to 127.0.0.1.

Exit status: 0 targets met, 1 a target missed, 2 a step failed.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "tools", "bench-harness.toml")
STREAM = "{bb-bench}"
# What `make bench-harness` checks (issue #9): brokerbench's produce-only XADD throughput at
# least 0.9x redis-benchmark's, its client CPU per message at most 1.5x.
TARGET_RATE = 0.9
TARGET_CPU = 1.5

# The sides of each round: the reference tool, `brokerbench produce` (the load engine driving
# the backend), and `produce --floor` (the backend's producer alone, batches, no engine).
NAMES = {"ref": "reference", "brokerbench": "brokerbench produce", "floor": "backend alone (--floor)"}
LIVE = {}  # pid -> Popen of client runs still running
CLUSTERS = []  # (kind, dir) started here, stopped at exit


class Failed(Exception):
    pass


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def host_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8])


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command: state is fields[0]; utime and stime are fields 14 and 15 of the file.
    return (int(fields[11]) + int(fields[12])) / TICK


def measured(cmd, timeout, label):
    """Run `cmd`; return its output, wall time, CPU seconds and the host's busy cores meanwhile."""
    busy0, total0 = host_busy_ticks()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    LIVE[p.pid] = p
    out, err = [], []
    readers = [
        threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
        for s, b in ((p.stdout, out), (p.stderr, err))
    ]
    for r in readers:
        r.start()
    deadline = t0 + timeout
    killed = False
    while True:
        # WNOWAIT: the process stays a zombie, so its /proc/<pid>/stat can still be read.
        info = os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            break
        if time.monotonic() > deadline and not killed:
            p.kill()
            killed = True
        time.sleep(0.01)
    wall = time.monotonic() - t0
    cpu = proc_cpu_s(p.pid)
    busy1, total1 = host_busy_ticks()
    rc = p.wait()
    del LIVE[p.pid]
    for r in readers:
        r.join(5)
    stdout = b"".join(out).decode(errors="replace")
    stderr = b"".join(err).decode(errors="replace")
    if killed:
        raise Failed(f"{label}: still running after {timeout} s (killed)")
    if rc != 0:
        raise Failed(f"{label}: exit status {rc}\n{stderr[-2000:]}{stdout[-2000:]}")
    cores = (busy1 - busy0) / max(total1 - total0, 1) * os.cpu_count()
    return stdout, wall, cpu, cores


def last_rate(text, pattern, label):
    found = re.findall(pattern, text)
    if not found:
        raise Failed(f"{label}: no rate in its output:\n{text[-1500:]}")
    return float(found[-1])


def run(cmd, label, check=True):
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check and r.returncode != 0:
        raise Failed(f"{label}: exit status {r.returncode}\n{r.stderr[-2000:]}{r.stdout[-1000:]}")
    return r.stdout


def cluster_up(a, kind):
    d = os.path.join(a.dir, kind)
    os.makedirs(a.dir, exist_ok=True)
    # A cluster this tool left in its folder earlier (killed outright) is stopped first.
    run([a.bin, "cluster", "down", kind, "--dir", d], "cluster down", check=False)
    CLUSTERS.append((kind, d))
    print(f"starting a local {kind} cluster in {d} ...", flush=True)
    run([a.bin, "cluster", "up", kind, "--dir", d, "--scenario", CONFIG], f"cluster up {kind}")
    return d


def redis_master(port):
    slot = int(run(["redis-cli", "-p", str(port), "CLUSTER", "KEYSLOT", STREAM], "KEYSLOT"))
    for line in run(["redis-cli", "-p", str(port), "CLUSTER", "NODES"], "CLUSTER NODES").splitlines():
        f = line.split()
        if "master" not in f[2] or "fail" in f[2]:
            continue
        for r in f[8:]:
            if r.startswith("["):
                continue
            lo, _, hi = r.partition("-")
            if int(lo) <= slot <= int(hi or lo):
                return int(f[1].split("@")[0].rsplit(":", 1)[1])
    raise Failed(f"no master owns slot {slot} of {STREAM}")


def pair_rounds(a, ref, ours, floor):
    """Alternate ref(), ours() and floor() for a.rounds rounds; each returns (rate, cpu_s, count,
    cores)."""
    rows = []
    for i in range(a.rounds):
        sides = [("ref", ref), ("brokerbench", ours)] + ([("floor", floor)] if a.floor else [])
        for side, fn in sides:
            rate, cpu, n, cores = fn()
            per_m = cpu / n * 1e6
            rows.append({"round": i + 1, "side": side, "rate": rate, "cpu_s": cpu,
                         "cpu_s_per_million": per_m, "count": n, "host_cores": cores})
            print(f"  round {i + 1} {NAMES[side]:>22}: {rate:>9.0f} msg/s  client CPU {cpu:6.2f} s"
                  f" = {per_m:6.2f} s per million  (host busy {cores:.2f} cores)", flush=True)
    return rows


def ratios(rows):
    by = {}
    for r in rows:
        by.setdefault(r["round"], {})[r["side"]] = r
    rate = [v["brokerbench"]["rate"] / v["ref"]["rate"] for v in by.values()]
    cpu = [v["brokerbench"]["cpu_s_per_million"] / v["ref"]["cpu_s_per_million"] for v in by.values()]
    floor_cpu = [v["floor"]["cpu_s_per_million"] / v["ref"]["cpu_s_per_million"]
                 for v in by.values() if "floor" in v] or [float("nan")]
    med = lambda side, k: statistics.median([r[k] for r in rows if r["side"] == side] or [float("nan")])
    return {
        "rate_ratio": statistics.median(rate), "rate_ratios": rate,
        "cpu_ratio": statistics.median(cpu), "cpu_ratios": cpu,
        "floor_cpu_ratio": statistics.median(floor_cpu),
        "ref_rate": med("ref", "rate"), "bb_rate": med("brokerbench", "rate"),
        "floor_rate": med("floor", "rate"),
        "ref_cpu_per_million": med("ref", "cpu_s_per_million"),
        "bb_cpu_per_million": med("brokerbench", "cpu_s_per_million"),
        "floor_cpu_per_million": med("floor", "cpu_s_per_million"),
    }


def bench_redis(a):
    d = cluster_up(a, "redis")
    seed = 7501
    master = redis_master(seed)
    payload = "x" * a.size
    n = a.redis_count
    print(f"Redis: XADD {STREAM} (master 127.0.0.1:{master}), {n} messages of {a.size} B per run,"
          f" 1 connection, {a.window} in flight, MAXLEN ~ 1000000", flush=True)

    def fresh():
        run(["redis-cli", "-p", str(master), "DEL", STREAM], "DEL")

    def ref():
        fresh()
        out, _, cpu, cores = measured(
            ["redis-benchmark", "-h", "127.0.0.1", "-p", str(master), "-n", str(n), "-c", "1",
             "-P", str(a.window), "-q", "XADD", STREAM, "MAXLEN", "~", "1000000", "*", "p", payload],
            a.timeout, "redis-benchmark")
        return last_rate(out, r"([\d.]+) requests per second", "redis-benchmark"), cpu, n, cores

    def ours(floor=False):
        fresh()
        out, _, cpu, cores = measured(
            [a.bin, "produce", "--seed", f"127.0.0.1:{seed}", "--stream", STREAM, "--count", str(n),
             "--rate", "max", "--max-in-flight", str(a.window), "--size", str(a.size),
             "--duration", f"{a.timeout}s"] + (["--floor"] if floor else []),
            a.timeout + 10, "brokerbench produce")
        check_total(out, n, "brokerbench produce (redis)")
        return last_rate(out, r"([\d.]+) msg/s confirmed", "brokerbench produce"), cpu, n, cores

    rows = pair_rounds(a, ref, ours, lambda: ours(True))
    fresh()
    return rows


def check_total(out, n, label):
    m = re.search(r"total: sent (\d+) confirmed (\d+)", out)
    if not m or int(m.group(2)) != n:
        raise Failed(f"{label}: not every message was confirmed:\n{out[-1500:]}")


def bench_rabbitmq(a):
    d = cluster_up(a, "rabbitmq")
    n = a.rabbit_count
    url = "amqp://guest:guest@127.0.0.1:5801/%2f"
    print(f"RabbitMQ: quorum queue led by rabbit1 (127.0.0.1:5801), {n} persistent messages of"
          f" {a.size} B per run with confirms, {a.window} unconfirmed at most", flush=True)

    def ref():
        out, _, cpu, cores = measured(
            [a.python, os.path.join(ROOT, "tools", "amqp_publisher.py"), "--url", url,
             "--queue", "bb-bench-pika", "--count", str(n), "--size", str(a.size),
             "--window", str(a.window), "--timeout", str(a.timeout)],
            a.timeout + 10, "amqp_publisher.py")
        return last_rate(out, r"([\d.]+) msg/s confirmed", "amqp_publisher.py"), cpu, n, cores

    def ours(floor=False):
        out, _, cpu, cores = measured(
            [a.bin, "produce", "--rabbitmq", d, "--stream", "bb-bench", "--count", str(n),
             "--rate", "max", "--max-in-flight", str(a.window), "--size", str(a.size),
             "--duration", f"{a.timeout}s"] + (["--floor"] if floor else []),
            a.timeout + 30, "brokerbench produce --rabbitmq")
        check_total(out, n, "brokerbench produce (rabbitmq)")
        return last_rate(out, r"([\d.]+) msg/s confirmed", "brokerbench produce"), cpu, n, cores

    return pair_rounds(a, ref, ours, lambda: ours(True))


def cleanup():
    for p in list(LIVE.values()):
        p.kill()
        p.wait()
    for kind, d in reversed(CLUSTERS):
        print(f"stopping the {kind} cluster in {d} ...", flush=True)
        try:
            run([a_bin, "cluster", "down", kind, "--dir", d], f"cluster down {kind}", check=False)
        except Exception as e:  # noqa: BLE001 - keep stopping the others
            print(f"warning: cluster down {kind}: {e}", file=sys.stderr)


a_bin = None


def main():
    global a_bin
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "brokerbench"))
    p.add_argument("--dir", default=os.path.join(ROOT, "run", "bench-harness"))
    p.add_argument("--python", default=sys.executable, help="Python with pika, for amqp_publisher.py")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--redis-count", type=int, default=300_000)
    p.add_argument("--rabbit-count", type=int, default=50_000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--timeout", type=int, default=120, help="bound of one client run, s")
    p.add_argument("--only", choices=["redis", "rabbitmq"])
    p.add_argument("--no-floor", dest="floor", action="store_false",
                   help="skip `produce --floor` (e.g. for a build that has none)")
    a = p.parse_args()
    if not (1 <= a.rounds <= 20 and 1 <= a.redis_count <= 10_000_000
            and 1 <= a.rabbit_count <= 1_000_000 and 40 <= a.size <= 1 << 20 and a.window >= 1):
        p.error("out of range: --rounds 1..20, counts up to 10M (Redis) / 1M (RabbitMQ), --size >= 40")
    a_bin = a.bin
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    results = {"load_before": open("/proc/loadavg").read().split()[:3]}
    code = 0
    try:
        if a.only in (None, "redis"):
            rows = bench_redis(a)
            results["redis"] = {"rows": rows, **ratios(rows)}
            cleanup_one("redis")
        if a.only in (None, "rabbitmq"):
            rows = bench_rabbitmq(a)
            results["rabbitmq"] = {"rows": rows, **ratios(rows)}
    except Failed as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("\ninterrupted: stopping what was started", file=sys.stderr)
        code = 130
    finally:
        cleanup()
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    if code:
        return code
    print("\nsummary (medians over rounds; ratios are brokerbench / reference, per round):")
    if "redis" in results:
        r = results["redis"]
        print(f"  Redis XADD: redis-benchmark {r['ref_rate']:.0f} msg/s, {r['ref_cpu_per_million']:.2f}"
              f" CPU s per million; brokerbench {r['bb_rate']:.0f} msg/s,"
              f" {r['bb_cpu_per_million']:.2f} CPU s per million")
        ok_rate, ok_cpu = r["rate_ratio"] >= TARGET_RATE, r["cpu_ratio"] <= TARGET_CPU
        print(f"  Redis throughput ratio {r['rate_ratio']:.2f} (target >= {TARGET_RATE}):"
              f" {'met' if ok_rate else 'MISSED'}; rounds {fmt(r['rate_ratios'])}")
        print(f"  Redis CPU ratio {r['cpu_ratio']:.2f} (target <= {TARGET_CPU}):"
              f" {'met' if ok_cpu else 'MISSED'}; rounds {fmt(r['cpu_ratios'])}")
        if a.floor:
            print(f"  Redis backend alone (--floor): {r['floor_rate']:.0f} msg/s,"
                  f" {r['floor_cpu_per_million']:.2f} CPU s per million ({r['floor_cpu_ratio']:.2f}x"
                  f" redis-benchmark's): the rest of brokerbench produce's CPU is the load engine's")
        if not (ok_rate and ok_cpu):
            code = 1
    if "rabbitmq" in results:
        r = results["rabbitmq"]
        print(f"  RabbitMQ publish with confirms: amqp_publisher.py (pika) {r['ref_rate']:.0f} msg/s,"
              f" {r['ref_cpu_per_million']:.2f} CPU s per million; brokerbench {r['bb_rate']:.0f}"
              f" msg/s, {r['bb_cpu_per_million']:.2f} CPU s per million")
        print(f"  RabbitMQ throughput ratio {r['rate_ratio']:.2f}, CPU ratio {r['cpu_ratio']:.2f};"
              f" rounds {fmt(r['rate_ratios'])} / {fmt(r['cpu_ratios'])}")
        if a.floor:
            print(f"  RabbitMQ backend alone (--floor): {r['floor_rate']:.0f} msg/s,"
                  f" {r['floor_cpu_per_million']:.2f} CPU s per million ({r['floor_cpu_ratio']:.2f}x"
                  f" the pika publisher's)")
    print(f"  (figures in {os.path.join(a.dir, 'results.json')})")
    return code


def cleanup_one(kind):
    for k, d in list(CLUSTERS):
        if k == kind:
            run([a_bin, "cluster", "down", k, "--dir", d], f"cluster down {k}", check=False)
            CLUSTERS.remove((k, d))


def fmt(xs):
    return " ".join(f"{x:.2f}" for x in xs)


if __name__ == "__main__":
    sys.exit(main())
