#!/usr/bin/env python3
"""Writes alerts/uptime-patterns.test.yml: the uptime outage patterns as promtool cases.

Usage: python3 alerts/uptime-patterns.py alerts/uptime-patterns.test.yml
"""
# Outage patterns for the uptime alerts: one test group each, 1-minute samples, 60 rounds a minute, after three
# healthy days (so the 3-day window is full, as on a laptop that has run for a while).
PREFIX = 3 * 1440
def series(instance, minutes, down, asleep=lambda m: False):
    checks, ups, obj, win = [], [], [], []
    c = u = 60 * PREFIX
    for m in range(minutes):
        if asleep(m):
            for l in (checks, ups, obj, win):
                l.append("_")
            continue
        c += 60
        u += 0 if down(m) else 60
        checks.append(str(c)); ups.append(str(u)); obj.append("0.99"); win.append("2592000")
    lab = f'job="openclaw-tunnel",instance="{instance}",forward="f"'
    pre = f"60+60x{PREFIX - 1} "
    return [
        (f'openclaw_tunnel_up_checks_total{{{lab}}}', pre + " ".join(checks)),
        (f'openclaw_tunnel_up_successes_total{{{lab}}}', pre + " ".join(ups)),
        (f'openclaw_objective_tunnel_uptime_ratio{{{lab}}}', f"0.99x{PREFIX - 1} " + " ".join(obj)),
        (f'openclaw_objective_window_seconds{{job="openclaw-tunnel",instance="{instance}"}}', f"2592000x{PREFIX - 1} " + " ".join(win)),
    ]
ALERTS = ["OpenclawTunnelUptimeBelowObjective", "OpenclawTunnelUptimeSustainedBelowObjective",
          "OpenclawTunnelErrorBudgetBurn", "OpenclawTunnelErrorBudgetBurnSlow"]
def at(minute):
    m = PREFIX + minute
    return f"{m // 60}h{m % 60}m"
import sys
patterns = {
  "three_minutes": (300, lambda m: 60 <= m < 63, lambda m: False, [59, 62, 66, 80, 120, 295]),
  "one_in_ten": (240, lambda m: 60 <= m < 180 and (m - 60) % 10 == 0, lambda m: False, [70, 85, 90, 100, 105, 120, 180, 239]),
  "one_per_hour": (2 * 1440 + 60, lambda m: m >= 60 and m % 60 == 0, lambda m: False, [120, 360, 720, 1200, 1500, 2400, 2900]),
  "ten_minutes": (240, lambda m: 60 <= m < 70, lambda m: False, [62, 66, 69, 70, 71, 72, 75, 80, 120]),
  "asleep_all_night": (720, lambda m: False, lambda m: 60 <= m < 540, [120, 300, 570, 660]),
  "twenty_min_an_hour": (480, lambda m: False, lambda m: m % 60 >= 20, [60, 190, 470]),
}
out = ["  # Outage patterns (README: uptime paging), each an instance, after three healthy days; one group so"
       "  # that promtool evaluates the five days once."]
out.append("  - interval: 1m\n    input_series:")
for name, (minutes, down, asleep, evals) in patterns.items():
    for s, v in series(name, minutes, down, asleep):
        out.append(f"      - series: '{s}'\n        values: '{v}'")
out.append("    alert_rule_test:")
times = sorted({t for (_, _, _, evals) in patterns.values() for t in evals})
SUMMARY = {
    "OpenclawTunnelErrorBudgetBurn": ("f is burning its tunnel error budget fast", "On {i}, {v} of observed rounds failed over the long window: at this rate the window's budget is gone in days.", "page", "openclawtunnelerrorbudgetburn"),
    "OpenclawTunnelErrorBudgetBurnSlow": ("f is spending its tunnel error budget faster than it earns it", "On {i}, {v} of observed rounds failed over three days.", "ticket", "openclawtunnelerrorbudgetburnslow"),
    "OpenclawTunnelUptimeSustainedBelowObjective": ("Tunnel f keeps dropping: {v} of the last 9 five-minute buckets below its objective", "Short outages on {i} keep coming back: each is brief, together they hold uptime below the objective.", "page", "openclawtunneluptimesustainedbelowobjective"),
}
FIRING = {
    (70, "OpenclawTunnelErrorBudgetBurn"): ("ten_minutes", "16.67%"),
    (71, "OpenclawTunnelErrorBudgetBurn"): ("ten_minutes", "16.67%"),
    (72, "OpenclawTunnelErrorBudgetBurn"): ("ten_minutes", "16.67%"),
    (90, "OpenclawTunnelUptimeSustainedBelowObjective"): ("one_in_ten", "4"),
    (100, "OpenclawTunnelUptimeSustainedBelowObjective"): ("one_in_ten", "5"),
    (105, "OpenclawTunnelUptimeSustainedBelowObjective"): ("one_in_ten", "5"),
    (120, "OpenclawTunnelUptimeSustainedBelowObjective"): ("one_in_ten", "5"),
    (180, "OpenclawTunnelUptimeSustainedBelowObjective"): ("one_in_ten", "4"),
    (2900, "OpenclawTunnelErrorBudgetBurnSlow"): ("one_per_hour", "1.111%"),
}
for t in times:
    for a in ALERTS:
        firing = FIRING.get((t, a))
        if not firing:
            out.append(f"      - eval_time: {at(t)}\n        alertname: {a}\n        exp_alerts: []")
            continue
        instance, value = firing
        summary, description, severity, anchor = SUMMARY[a]
        out.append(f"      - eval_time: {at(t)}\n        alertname: {a}\n        exp_alerts:")
        out.append(f"          - exp_labels: {{severity: {severity}, job: openclaw-tunnel, instance: {instance}, forward: f}}")
        out.append("            exp_annotations:")
        out.append(f'              summary: "{summary.format(v=value, i=instance)}"')
        out.append(f'              description: "{description.format(v=value, i=instance)}"')
        out.append(f'              runbook_url: "README.md#alert-{anchor}"')
out.append("")
header = """# promtool test rules alerts/uptime-patterns.test.yml (written by alerts/uptime-patterns.py: edit that)
# The outage patterns of README.md "Uptime paging", each an instance after three healthy days, one minute a
# sample and 60 rounds a minute: what pages, what tickets, what stays quiet, at the boundaries.
rule_files:
  - openclaw.rules.yml

evaluation_interval: 1m

# promtool evaluates the rule groups of a test in an order of its own choosing unless told (map order: a
# recorded ratio read by an alert of another group could be a step old in one run and current in the next,
# and a boundary moved by one evaluation; a clean-clone CI run failed on it). Recording rules first, as their
# names say they are inputs.
group_eval_order:
  - openclaw-recording
  - openclaw-token-fleet
  - openclaw-slo
  - openclaw-alerts

tests:
"""
open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/patterns.yml", "w").write(header + "\n".join(out) + "\n")
