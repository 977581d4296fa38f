#!/usr/bin/env python3
"""The table of `make scale` (dev-cluster/scale.sh), from its work folder.

usage: scale_report.py WORK DEVICES T0 T_REGISTERED MAX_PARALLEL SOAK

Inputs in WORK: rollouts.jsonl (wall time, exit code, peak RSS of each
apply), <name>.json (apply -json), runs.json (the archived runs' stages),
proxy.json (fleetplan's requests per second through the counting proxies,
node metadata writes), telemetry.jsonl (Nomad's and Consul's in-memory
telemetry, 10 s intervals), nodesim-mem-*.txt, nodesim-status.json.
"""
import json
import math
import re
import sys
from datetime import datetime, timezone

work, n, t0, t1, maxp, soak = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]


def load(name, default=None):
    try:
        with open(f"{work}/{name}") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def mem_kb(name, field):
    try:
        for line in open(f"{work}/{name}"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def ts(s):
    """RFC 3339 (Go's, nanoseconds) to Unix seconds; None for Go's zero time."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", s or "")
    if not m or s.startswith("0001-"):
        return None
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    frac = float(m.group(2) or 0)
    return datetime.fromisoformat(m.group(1) + tz).timestamp() + frac


rollouts = [json.loads(line) for line in open(f"{work}/rollouts.jsonl")]
runs = load("runs.json", {})
# A rollout refused (the previous one still in progress) names the run in
# progress: count every run once.
seen = set()
for name in list(runs):
    if runs[name].get("id") in seen:
        del runs[name]
    seen.add(runs.get(name, {}).get("id"))
proxy = load("proxy.json", {})
status = load("nodesim-status.json", {})
status_idle = load("nodesim-status-idle.json", {}) or {}
telemetry = []
try:
    telemetry = [json.loads(line) for line in open(f"{work}/telemetry.jsonl")]
except OSError:
    pass

# Soak windows of every stage that soaked: from the soak's start to its
# end, or to the stage's end when its gate failed during the soak (what
# follows is the rollback, not a soak).
windows = []
for name, run in runs.items():
    for st in run.get("stages") or []:
        until = ts(st.get("soak_until"))
        if until is None:
            continue
        dur = (st.get("soak") or 0) / 1e9
        end = min(until, ts(st.get("finished_at")) or until)
        if end > until - dur:
            windows.append((until - dur, end, name, st.get("name")))


def in_windows(t, margin=0.0):
    return any(a + margin <= t <= b - margin for a, b, _, _ in windows)


def in_soak_second(t):
    """Whether the proxy's one-second bucket starting at t lies wholly in a
    soak: the bucket of a soak's last second also holds what follows it
    (the next stage's switches, which start the instant the gate passes)."""
    return any(a <= t and t + 1 <= b for a, b, _, _ in windows)


# The soak seconds the proxy's figures are per: whole seconds in a soak.
soak_seconds = sum(max(0, math.floor(b) - math.ceil(a)) for a, b, _, _ in windows)


def proxy_soak(route):
    r = proxy.get(route) or {}
    reqs, max_open, open_sum, secs = 0, 0, 0, 0
    for s in r.get("seconds") or []:
        if in_soak_second(s["t"]):
            reqs += s["requests"]
            max_open = max(max_open, s["max_open"])
    return reqs, max_open


# Switches: per stage, the devices switched over the stage's switching time
# (from its start to its soak's start: each switch is complete, the device
# runs the candidate). The node metadata writes (one per switch, through the
# proxy) time the rollback's switches back.
writes = sorted(w / 1000 for w in (proxy.get("nomad") or {}).get("meta_writes") or [])
stage_rates = []  # (run, stage, devices, seconds)
for name, run in runs.items():
    for st in run.get("stages") or []:
        start, until = ts(st.get("started_at")), ts(st.get("soak_until"))
        if start is None or until is None:
            continue
        sw = until - (st.get("soak") or 0) / 1e9 - start
        if sw > 0 and st.get("attempted"):
            stage_rates.append((name, st.get("name"), st["attempted"], sw))
big = max((x for x in stage_rates if x[0] == "release"), key=lambda x: x[2], default=None)
rollback_line = "n/a"
bad = runs.get("rollback")
if bad:
    # After the last stage's switches (its soak started), every metadata
    # write of the run is a switch back.
    soaks = [ts(st.get("soak_until")) - (st.get("soak") or 0) / 1e9 for st in bad.get("stages") or [] if ts(st.get("soak_until"))]
    end = bad.get("_end")
    back = [w for w in writes if soaks and end and max(soaks) + 1 < w <= end]
    if back and end > back[0]:
        rollback_line = f"{len(back)} switched back in {end - back[0]:.0f} s (verified healthy on the old slot): {len(back) / (end - back[0]):.1f}/s"


# Server telemetry: complete 10 s intervals inside a soak window.
def interval_start(s):
    return datetime.strptime(s.split(" +")[0], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def telem(server, pick):
    vals = []
    for rec in telemetry:
        if rec["server"] != server:
            continue
        a = interval_start(rec["interval"])
        if any(w0 <= a and a + 10 <= w1 for w0, w1, _, _ in windows):
            vals.append(pick(rec) / 10.0)
    return (sum(vals) / len(vals), len(vals)) if vals else (float("nan"), 0)


def sum_prefix(d, prefix):
    return sum(v for k, v in d.items() if k.startswith(prefix))


nomad_rpc, nomad_iv = telem("nomad", lambda r: sum_prefix(r["counters"], "nomad.nomad.rpc.request{"))
consul_http, consul_iv = telem("consul", lambda r: sum_prefix(r["samples"], "consul.api.http{"))
consul_rpc, _ = telem("consul", lambda r: sum_prefix(r["counters"], "consul.rpc.request{"))
heartbeats = [rec["gauges"].get("nomad.nomad.heartbeat.active") for rec in telemetry if rec["server"] == "nomad"]

rss_idle = mem_kb("nodesim-mem-idle.txt", "VmRSS")
rss_end = mem_kb("nodesim-mem-end.txt", "VmRSS")
hwm_end = mem_kb("nodesim-mem-end.txt", "VmHWM")
nreq, nmax = proxy_soak("nomad")
creq, cmax = proxy_soak("consul")


def open_together():
    """The most long-polls open to Nomad and Consul together in one second
    of a soak (the sum of both routes' maxima in that second: an upper
    bound)."""
    by_sec = {}
    for route in ("nomad", "consul"):
        for s in (proxy.get(route) or {}).get("seconds") or []:
            if in_soak_second(s["t"]):
                by_sec[s["t"]] = by_sec.get(s["t"], 0) + s["max_open"]
    return max(by_sec.values(), default=0)


def f(x, d=1):
    return "n/a" if x != x else f"{x:.{d}f}"


rows = [
    ("simulated devices registered (Nomad ready + Consul alive)", f"{status.get('started', '?')}/{n} in {t1 - t0:.0f} s"),
    ("simulator RSS per device (idle / after the rollouts / peak)", f"{rss_idle / n / 1024:.2f} / {rss_end / n / 1024:.2f} / {hwm_end / n / 1024:.2f} MB  (total {rss_idle / 1024:.0f} / {rss_end / 1024:.0f} / {hwm_end / 1024:.0f} MB)"),
    ("simulator live heap per device (idle, right after a collection)", (f"{status_idle['live_heap_mb'] / n:.2f} MB (total {status_idle['live_heap_mb']} MB)" if status_idle.get("live_heap_mb") else "n/a")),
    ("simulator: starts paused for its lag, devices re-joined through the server", f"{status.get('starts_paused', 'n/a')}, {status.get('rejoined', 'n/a')}"),
]
for r in rollouts:
    doc = load(f"{r['name']}.json", {}) or {}
    ro = (doc.get("rollouts") or [{}])[0]
    # No outcome: the run ended before the rollout did (an error); its
    # phase then, and the error.
    outcome = ro.get("outcome") or "ended in phase " + str((ro.get("state") or {}).get("fleetplan_phase") or "?")
    err = ""
    if not ro.get("outcome"):
        try:
            errs = [line.strip() for line in open(f"{work}/{r['name']}.log") if line.startswith("Error:")]
            err = (": " + errs[-1][:160]) if errs else ""
        except OSError:
            pass
    rows.append((f"rollout '{r['name']}' ({r['version']}): wall time, outcome", f"{r['end'] - r['start']:.0f} s, {outcome} (exit {r['exit_code']}){err}"))
    rows.append((f"rollout '{r['name']}': controller peak RSS", f"{r['peak_rss_kb'] / 1024:.0f} MB"))
    if r["name"] == "release":
        cu = load("catchup-run.json")
        if cu:
            cdoc = load("catchup.json", {}) or {}
            left = cdoc.get("remaining")
            rows.append(("catch-up after the release: devices it skipped offline, wall time, still offline",
                         f"{cu['skipped']}, {cu['end'] - cu['start']:.0f} s, {left if left is not None else '?'} (exit {cu['exit_code']})"))
        else:
            rows.append(("catch-up after the release: devices it skipped offline", "0 (none needed)"))
rows += [
    ("switches/s sustained, largest stage of the release (devices / switching time)", (f"{big[2] / big[3]:.1f}/s ({big[2]} devices in {big[3]:.1f} s, max_parallel {maxp})" if big else "n/a")),
    ("switching per stage (release, then the bad release)", "; ".join(f"{s_} {d} in {t:.0f} s" for _, s_, d, t in stage_rates)),
    ("rollback of the bad release", rollback_line),
    ("node metadata writes (switches, rollback included)", f"{len(writes)}"),
    (f"soak time measured ({len(windows)} soaks of {soak})", f"{soak_seconds:.0f} s"),
    ("fleetplan -> Nomad during soak: requests/s, long-polls open (max)", f"{f(nreq / soak_seconds if soak_seconds else float('nan'), 2)}/s, {nmax}"),
    ("fleetplan -> Consul during soak: requests/s, long-polls open (max)", f"{f(creq / soak_seconds if soak_seconds else float('nan'), 2)}/s, {cmax}"),
    ("fleetplan long-polls open at once during soak, Nomad + Consul (max)", f"{open_together()}"),
    ("baseline: Nomad server RPCs/s during soak (simulated clients' heartbeats, alloc long-polls)", f"{f(nomad_rpc)}/s ({nomad_iv} intervals); heartbeating nodes {max([h for h in heartbeats if h is not None], default=0):.0f}"),
    ("Consul server during soak: HTTP requests/s (fleetplan + simulator catalog writes), RPCs/s (the 6 real agents)", f"{f(consul_http)}/s, {f(consul_rpc)}/s ({consul_iv} intervals)"),
    ("simulator: service registrations, deregistrations, critical, Consul errors", f"{status.get('services_registered')}, {status.get('services_deregistered')}, {status.get('services_critical')}, {status.get('consul_errors')}"),
]
w = max(len(a) for a, _ in rows)
print()
print(f"make scale: {n} simulated devices on the dev cluster's Nomad 1.6.1 and Consul 1.14.8 servers")
print()
print(f"| {'measure'.ljust(w)} | value |")
print(f"|{'-' * (w + 2)}|-------|")
for a, b in rows:
    print(f"| {a.ljust(w)} | {b} |")
print()
for route in ("nomad", "consul"):
    soak_paths = {}
    for s in (proxy.get(route) or {}).get("seconds") or []:
        if in_soak_second(s["t"]):
            for p, c in (s.get("paths") or {}).items():
                soak_paths[p] = soak_paths.get(p, 0) + c
    if soak_paths and soak_seconds:
        busiest = sorted(soak_paths.items(), key=lambda kv: -kv[1])[:6]
        print(f"fleetplan's busiest {route} requests during soak: " + ", ".join(f"{p} {c / soak_seconds:.2f}/s" for p, c in busiest))
for route in ("nomad", "consul"):
    paths = (proxy.get(route) or {}).get("paths") or {}
    busiest = sorted(paths.items(), key=lambda kv: -kv[1])[:6]
    print(f"fleetplan's busiest {route} requests (whole run): " + ", ".join(f"{p} x{c}" for p, c in busiest))
