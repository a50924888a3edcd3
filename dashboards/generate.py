#!/usr/bin/env python3
"""Writes the three Grafana dashboards of this folder from one description.

    python3 dashboards/generate.py        # rewrite the JSON files
    python3 dashboards/generate.py --check  # exit 1 if a JSON file is not what it writes

The dashboards share their layout and panel titles; only the queries change:
- reaction-prometheus.json: /metrics (legacy names, "since the last scrape" gauges) in
  Prometheus; running totals with the `$__from` subquery technique;
- reaction-victoriametrics.json: the same in VictoriaMetrics, with MetricsQL
  (`running_sum`, `tfirst_over_time`/`tlast_over_time`, `topk_last`);
- reaction-otel.json: the OTLP push through an OpenTelemetry Collector
  (`deltatocumulative`, then the `prometheus` exporter): cumulative `*_total` counters,
  differenced exactly (see `Flavour.delta`; not `increase`/`rate`).

tests/dashboards.rs checks the JSON (datasource and instance variables, metric and label
names); tests/dashboards_e2e.rs runs every query on real Prometheus and VictoriaMetrics
fed by the real exporter; tests/dashboards_otel_e2e.rs runs the OpenTelemetry one on real
Prometheus behind a Collector stand-in. Edit this script, not the JSON, and run it.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${datasource}"}

# --------------------------------------------------------------------------- selectors


class Names:
    """Metric names and the label selectors of one kind of dashboard."""

    def __init__(self, otel):
        self.otel = otel
        if otel:
            self.matches = "reaction_filter_matches_total"
            self.actions = "reaction_action_runs_total"
            self.pending = "reaction_action_pending"
            self.commands = "reaction_command_runs_total"
            self.streams = "reaction_stream_events_total"
        else:
            self.matches = "reaction_match_count"
            self.actions = "reaction_action_count"
            self.pending = "reaction_pending_count"
            self.commands = "reaction_commands_count"
            self.streams = "reaction_stream_event_count"

    PAT = 'instance=~"$instance",stream=~"$stream",filter=~"$filter",ip=~"$ip"'

    def m(self, extra=""):
        return "%s{%s%s}" % (self.matches, self.PAT, extra)

    def mip(self):
        return self.m(',ip!=""')

    def a(self, extra=""):
        return "%s{%s%s}" % (self.actions, self.PAT, extra)

    def aip(self):
        return self.a(',ip!=""')

    def p(self):
        return "%s{%s}" % (self.pending, self.PAT)

    def c(self, extra=""):
        return '%s{instance=~"$instance"%s}' % (self.commands, extra)

    def e(self, extra=""):
        return '%s{instance=~"$instance",stream=~"$stream"%s}' % (self.streams, extra)


class Flavour:
    """How counts over time are written for one database and one kind of metric."""

    def __init__(self, kind):
        self.kind = kind  # "prometheus", "victoriametrics" or "otel"
        self.n = Names(kind == "otel")

    # Events in a window: the "since the last scrape" gauges are summed, the cumulative
    # counters differenced.
    def over(self, sel, window):
        if self.kind == "otel":
            return self.delta(sel, window)
        return "sum_over_time(%s[%s])" % (sel, window)

    @staticmethod
    def delta(sel, window):
        """Per series of a cumulative counter, the events in the window that ends at the
        evaluation time, exactly: the last value in the window minus the last value before
        it (looked for over Prometheus' 5 min lookback, so a missed scrape does not matter).
        A series with no value before the window was born in it: the Collector's first
        point already holds its first events, so its whole value counts; so does a series
        that went down (a reset: the Collector restarted, or forgot an idle series after
        `max_stale` and started it again).

        Not `increase()` or `rate()`: both start from the first sample in the window, so
        they miss the first point of every series (for an IP seen in one burst, all of
        its matches), and both extrapolate to the window's ends (1.08 for 82 matches)."""
        return (
            "(last_over_time({s}[{w}]) - last_over_time({s}[5m] offset {w})) >= 0"
            " or last_over_time({s}[{w}])".format(s=sel, w=window)
        )

    def total(self, sel, window, by=None, zero=False):
        inner = self.over(sel, window)
        q = "sum by (%s) (%s)" % (by, inner) if by else "sum(%s)" % inner
        return q + " or vector(0)" if zero else q

    def per_interval(self, sel, by):
        """Events per interval (bars): the windows of consecutive points tile the time
        axis, so every event is counted once whatever the step."""
        return "sum by (%s) (%s)" % (by, self.over(sel, "$__interval"))

    def running(self, sel, by):
        """The running total from the start of the dashboard's range: the per-interval
        counts after the start, added up (for the cumulative counters too: `x - x @
        start()` would drop a series the Collector stops serving, an idle IP after
        `metric_expiration`, and go wrong at a reset)."""
        if self.kind == "victoriametrics":
            return "running_sum(sum by (%s) (sum_over_time(%s[$__interval])))" % (by, sel)
        return (
            "sum_over_time((sum by (%s) (%s) "
            "and on() (vector(time()) > $__from / 1000))[$__range:$__interval])"
            % (by, self.over(sel, "$__interval"))
        )

    # Lifetime: time between the first and the last match of an (instance, stream,
    # filter, ip), over the range.
    LT = "instance, stream, filter, ip"

    def _seen(self, window):
        """Per (instance, stream, filter, ip): a point at the end of each interval with
        matches; its timestamp() is the end of that interval. (The gauges have no sample
        in an interval without matches; the counters' difference is 0 there.)"""
        q = "sum by (%s) (%s)" % (self.LT, self.over(self.n.mip(), window))
        if self.kind == "otel":
            q += " > 0"
        return "timestamp(%s)" % q

    def first_seen(self):
        if self.kind == "victoriametrics":
            return "1000 * min by (%s) (tfirst_over_time(%s[$__range]))" % (self.LT, self.n.mip())
        w = "$__interval"
        return "1000 * (min_over_time(%s[$__range:$__interval]) - %s)" % (
            self._seen(w),
            "$__interval_ms / 1000",
        )

    def last_seen(self):
        if self.kind == "victoriametrics":
            return "1000 * max by (%s) (tlast_over_time(%s[$__range]))" % (self.LT, self.n.mip())
        w = "$__interval"
        return "1000 * max_over_time(%s[$__range:$__interval])" % self._seen(w)

    def lifetime(self):
        if self.kind == "victoriametrics":
            return "max by ({b}) (tlast_over_time({s}[$__range])) - min by ({b}) (tfirst_over_time({s}[$__range]))".format(
                b=self.LT, s=self.n.mip()
            )
        w = "$__interval"
        s = self._seen(w)
        return "max_over_time({s}[$__range:$__interval]) - min_over_time({s}[$__range:$__interval])".format(
            s=s
        )

    def lifetime_running_avg(self):
        if self.kind == "victoriametrics":
            return (
                "avg by (instance) (running_max(max by ({b}) (tlast_over_time({s}[$__interval])))"
                " - running_min(min by ({b}) (tfirst_over_time({s}[$__interval]))))".format(
                    b=self.LT, s=self.n.mip()
                )
            )
        w = "$__interval"
        s = "(%s and on() (vector(time()) > $__from / 1000))" % self._seen(w)
        return (
            "avg by (instance) (max_over_time({s}[$__range:$__interval])"
            " - min_over_time({s}[$__range:$__interval]))".format(s=s)
        )


# --------------------------------------------------------------------------- panels


class Layout:
    def __init__(self):
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        self.newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "id": self._id(),
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def newline(self):
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)


def target(expr, ref="A", instant=False, legend=None, fmt=None):
    t = {
        "datasource": DS,
        "refId": ref,
        "expr": expr,
        "editorMode": "code",
        "range": not instant,
        "instant": instant,
    }
    if legend is not None:
        t["legendFormat"] = legend
    if fmt:
        t["format"] = fmt
    return t


def base(kind, title, description, targets, unit="short", decimals=None):
    defaults = {"unit": unit}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {},
    }


def stat(title, description, expr, unit="short", mappings=None, color=None):
    p = base("stat", title, description, [target(expr, instant=True, legend="__auto")], unit, 0)
    p["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value" if color else "none",
        "graphMode": "none",
        "textMode": "auto",
        "justifyMode": "auto",
        "orientation": "auto",
    }
    if mappings:
        p["fieldConfig"]["defaults"]["mappings"] = mappings
    if color:
        p["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
        p["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": color}
    return p


def table(title, description, targets, value_name="Value", ip_link=False, unit="short", merge=False):
    p = base("table", title, description, targets, unit)
    p["options"] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if not merge:
        p["options"]["sortBy"] = [{"displayName": value_name, "desc": True}]
    transformations = []
    if merge:
        transformations.append({"id": "merge", "options": {}})
    rename = {"Value": value_name} if not merge else {}
    transformations.append(
        {
            "id": "organize",
            "options": {"excludeByName": {"Time": True}, "indexByName": {}, "renameByName": rename},
        }
    )
    p["transformations"] = transformations
    if ip_link:
        p["fieldConfig"]["overrides"].append(
            {
                "matcher": {"id": "byName", "options": "ip"},
                "properties": [
                    {
                        "id": "links",
                        "value": [
                            {
                                "title": "Show this IP in every panel",
                                "url": "/d/${__dashboard.uid}?${__url_time_range}&${instance:queryparam}&var-ip=${__value.raw}",
                            }
                        ],
                    }
                ],
            }
        )
    return p


def instant_table_target(expr, ref="A"):
    return target(expr, ref=ref, instant=True, fmt="table")


def timeseries(title, description, targets, unit="short", bars=False, stack=False):
    p = base("timeseries", title, description, targets, unit)
    custom = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 60 if bars else 10,
        "showPoints": "never",
        "spanNulls": not bars,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    p["fieldConfig"]["defaults"]["custom"] = custom
    p["options"] = {
        "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"] if not bars else ["sum"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return p


def histogram(title, description, expr, unit):
    """A histogram per instance of the values of an instant query (one row per series)."""
    p = base("histogram", title, description, [target(expr, instant=True, fmt="table")], unit)
    p["options"] = {"bucketOffset": 0, "combine": False, "legend": {"displayMode": "list", "placement": "bottom"}}
    p["transformations"] = [
        {"id": "partitionByValues", "options": {"fields": ["instance"], "keepFields": False}},
    ]
    return p


UP_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "down", "color": "red", "index": 0},
            "1": {"text": "up", "color": "green", "index": 1},
        },
    }
]
UP_COLORS = [{"color": "red", "value": None}, {"color": "green", "value": 1}]
ERR_COLORS = [{"color": "green", "value": None}, {"color": "red", "value": 1}]


def panels(f):
    n = f.n
    lay = Layout()
    otel = f.kind == "otel"
    counts = "per interval"
    when = "of the dashboard's range"

    # ------------------------------------------------------------------ Status
    lay.row("Status")
    if otel:
        lay.add(
            stat(
                "reaction status",
                "1 when `reaction show` answers, per instance (reaction_up).",
                'max by (instance) (reaction_up{instance=~"$instance"})',
                mappings=UP_MAPPINGS,
                color=UP_COLORS,
            ),
            6,
            4,
        )
        lay.add(
            stat(
                "Last log line",
                "Seconds since the last line of reaction's log that the exporter read, per instance.",
                'time() - max by (instance) (reaction_exporter_last_event_time_seconds{instance=~"$instance"})',
                unit="s",
            ),
            6,
            4,
        )
        lay.add(
            table(
                "reaction version",
                "reaction's version per instance, from `reaction -V` (N/A if unknown).",
                [instant_table_target('max by (instance, version) (reaction_up{instance=~"$instance"})')],
            ),
            6,
            4,
        )
        lay.add(
            table(
                "Exporter version",
                "The exporter's version per instance (the OTLP resource attribute service.version, in target_info).",
                [instant_table_target('max by (instance, service_version) (target_info{instance=~"$instance"})')],
            ),
            6,
            4,
        )
    else:
        lay.add(
            stat(
                "reaction status",
                "Whether `reaction show` answers, per instance (the status label of reaction_status_info).",
                '(max by (instance) (reaction_status_info{instance=~"$instance",status="1"}))'
                ' or (max by (instance) (reaction_status_info{instance=~"$instance",status="0"}) - 1)',
                mappings=UP_MAPPINGS,
                color=UP_COLORS,
            ),
            6,
            4,
        )
        lay.add(
            stat(
                "Exporter scrapes",
                "Whether the exporter answers the scrapes (`up` of the scrape job, whose name starts with `reaction`).",
                'up{job=~"reaction.*",instance=~"$instance"}',
                mappings=UP_MAPPINGS,
                color=UP_COLORS,
            ),
            6,
            4,
        )
        lay.add(
            table(
                "reaction version",
                "reaction's version per instance, from `reaction -V` (N/A if unknown), and its status.",
                [instant_table_target('max by (instance, version, status) (reaction_status_info{instance=~"$instance"})')],
            ),
            6,
            4,
        )
        lay.add(
            table(
                "Exporter version",
                "reaction-metrics-exporter's version per instance.",
                [instant_table_target('max by (instance, version) (reaction_exporter_build_info{instance=~"$instance"})')],
            ),
            6,
            4,
        )

    # ------------------------------------------------------------------ Totals
    lay.row("Totals")
    totals = [
        ("Matches", n.m(), False, "Matches of the selected filters and IPs"),
        ("Actions", n.a(), False, "Actions run for the selected filters and IPs"),
        ("Stream errors", n.e(',type!="start"'), True, "Stream events other than `start` (exit, exec, read, timeout)"),
        ("Failed commands", n.c(',status!="True"'), True, "Start and stop commands that failed"),
    ]
    for name, sel, zero, desc in totals:
        colors = ERR_COLORS if zero else None
        lay.add(stat(name + " in range", desc + ", over the dashboard's range.", f.total(sel, "$__range", zero=zero), color=colors), 3, 4)
        lay.add(stat(name + ", last 365 days", desc + ", over the last 365 days.", f.total(sel, "1y", zero=zero), color=colors), 3, 4)
    lay.add(
        stat(
            "IPs matched in range",
            "Distinct values of the `ip` pattern that matched, over the dashboard's range.",
            "count(sum by (ip) (%s) > 0)" % f.over(n.mip(), "$__range"),
        ),
        3,
        4,
    )
    lay.add(
        stat(
            "IPs matched, last 365 days",
            "Distinct values of the `ip` pattern that matched, over the last 365 days.",
            "count(sum by (ip) (%s) > 0)" % f.over(n.mip(), "1y"),
        ),
        3,
        4,
    )

    # ------------------------------------------------------------------ Actions
    lay.row("Actions")
    lay.add(
        table(
            "Actions by filter and action",
            "Actions run over the dashboard's range, per instance, stream, filter and action.",
            [instant_table_target(f.total(n.a(), "$__range", by="instance, stream, filter, action"))],
            value_name="actions",
        ),
        8,
        8,
    )
    lay.add(
        stat(
            "Pending actions",
            "Executions that reaction has scheduled now (e.g. unbans after a delay), as `reaction show` lists them.",
            "sum(%s) or vector(0)" % n.p(),
        ),
        4,
        8,
    )
    lay.add(
        table(
            "Pending actions by filter and action",
            "Executions scheduled now, per instance, stream, filter and action.",
            [instant_table_target("sum by (instance, stream, filter, action) (%s)" % n.p())],
            value_name="pending",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Pending actions over time",
            "Executions scheduled, per instance.",
            [target("sum by (instance) (%s)" % n.p(), legend="{{instance}}")],
        ),
        24,
        7,
    )

    # ------------------------------------------------------------------ Evolution
    lay.row("Evolution of events")
    lay.add(
        timeseries(
            "Matches, running total",
            "Matches since the start of the dashboard's range, per instance.",
            [target(f.running(n.m(), "instance"), legend="{{instance}}")],
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Actions, running total",
            "Actions since the start of the dashboard's range, per instance.",
            [target(f.running(n.a(), "instance"), legend="{{instance}}")],
        ),
        12,
        8,
    )
    unit = "short"
    lay.add(
        timeseries(
            "Matches " + counts,
            "Matches per instance, in each interval of the graph.",
            [target(f.per_interval(n.m(), "instance"), legend="{{instance}}")],
            unit=unit,
            bars=True,
            stack=True,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Actions " + counts,
            "Actions per instance, in each interval of the graph.",
            [target(f.per_interval(n.a(), "instance"), legend="{{instance}}")],
            unit=unit,
            bars=True,
            stack=True,
        ),
        12,
        8,
    )

    # ------------------------------------------------------------------ Filters
    lay.row("Filters")
    lay.add(
        table(
            "Matches by filter and instance",
            "Matches over the dashboard's range, per instance, stream and filter: which machine is targeted by what.",
            [instant_table_target(f.total(n.m(), "$__range", by="instance, stream, filter"))],
            value_name="matches",
        ),
        8,
        8,
    )
    lay.add(
        table(
            "Matches by filter and instance, last 365 days",
            "Matches over the last 365 days, per instance, stream and filter.",
            [instant_table_target(f.total(n.m(), "1y", by="instance, stream, filter"))],
            value_name="matches",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Matches by filter, running total",
            "Matches since the start of the dashboard's range, per instance, stream and filter.",
            [target(f.running(n.m(), "instance, stream, filter"), legend="{{instance}} {{stream}}.{{filter}}")],
        ),
        8,
        8,
    )

    # ------------------------------------------------------------------ reaction's events
    lay.row("reaction's events")
    lay.add(
        timeseries(
            "Stream events",
            "Stream events per instance, stream and type (start, exit, exec, read, timeout), per interval.",
            [target(f.per_interval(n.e(), "instance, stream, type"), legend="{{instance}} {{stream}} {{type}}")],
            unit=unit,
            bars=True,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Commands",
            "Start and stop commands per instance, state, program, success and exit code, per interval.",
            [
                target(
                    f.per_interval(n.c(), "instance, state, command, status, code"),
                    legend="{{instance}} {{state}} {{command}} {{status}} ({{code}})",
                )
            ],
            unit=unit,
            bars=True,
        ),
        12,
        8,
    )
    lay.add(
        table(
            "Stream errors",
            "Stream events other than `start` over the dashboard's range.",
            [instant_table_target(f.total(n.e(',type!="start"'), "$__range", by="instance, stream, type"))],
            value_name="events",
        ),
        12,
        6,
    )
    lay.add(
        table(
            "Failed commands",
            "Start and stop commands that failed, over the dashboard's range.",
            [instant_table_target(f.total(n.c(',status!="True"'), "$__range", by="instance, state, command, code"))],
            value_name="failures",
        ),
        12,
        6,
    )

    # ------------------------------------------------------------------ IP blame
    lay.row("IP blame")
    for window, suffix in (("$__range", ""), ("1y", ", last 365 days")):
        lay.add(
            table(
                "Top IPs by matches" + suffix,
                "The 20 IPs that matched most (all instances and filters).",
                [instant_table_target("topk(20, %s)" % f.total(n.mip(), window, by="ip"))],
                value_name="matches",
                ip_link=True,
            ),
            6,
            8,
        )
    for window, suffix in (("$__range", ""), ("1y", ", last 365 days")):
        lay.add(
            table(
                "Top IPs by actions" + suffix,
                "The 20 IPs with most actions, per action.",
                [instant_table_target("topk(20, %s)" % f.total(n.aip(), window, by="ip, action"))],
                value_name="actions",
                ip_link=True,
            ),
            6,
            8,
        )
    for window, suffix in (("$__range", ""), ("1y", ", last 365 days")):
        lay.add(
            table(
                "IPs seen in several filters" + suffix,
                "IPs that matched in more than one filter, with the number of filters: worth a look.",
                [
                    instant_table_target(
                        "count by (ip) (%s > 0) > 1" % f.total(n.mip(), window, by="ip, stream, filter")
                    )
                ],
                value_name="filters",
                ip_link=True,
            ),
            6,
            8,
        )
    lay.add(
        table(
            "IPs seen on several instances",
            "IPs that matched on more than one instance over the dashboard's range, with the number of instances.",
            [instant_table_target("count by (ip) (%s > 0) > 1" % f.total(n.mip(), "$__range", by="ip, instance"))],
            value_name="instances",
            ip_link=True,
        ),
        6,
        8,
    )
    lay.add(
        table(
            "Where and when IPs matched",
            "Per IP, instance, stream and filter over the dashboard's range: matches, first and last match"
            + ("." if f.kind == "victoriametrics" else " (to the graph's interval)."),
            [
                instant_table_target(f.total(n.mip(), "$__range", by="ip, instance, stream, filter"), "A"),
                instant_table_target(f.first_seen(), "B"),
                instant_table_target(f.last_seen(), "C"),
            ],
            ip_link=True,
            merge=True,
        ),
        24,
        9,
    )
    where = lay.panels[-1]
    where["transformations"][-1]["options"]["renameByName"] = {
        "Value #A": "matches",
        "Value #B": "first match",
        "Value #C": "last match",
    }
    where["fieldConfig"]["overrides"] += [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "unit", "value": "dateTimeAsIso"}],
        }
        for name in ("first match", "last match")
    ]
    if f.kind == "victoriametrics":
        lay.add(
            timeseries(
                "Top IPs, running total",
                "The 10 IPs with most matches at the end of the range, as running totals (MetricsQL topk_last).",
                [target("topk_last(10, %s)" % f.running(n.mip(), "ip"), legend="{{ip}}")],
            ),
            24,
            8,
        )

    # ------------------------------------------------------------------ Lifetime
    lay.row("Lifetime")
    lay.add(
        timeseries(
            "Average lifetime per instance",
            "Lifetime is the time between the first and the last match of an IP in a filter"
            " (one-shot or long run), since the start of the dashboard's range; averaged per instance.",
            [target(f.lifetime_running_avg(), legend="{{instance}}")],
            unit="s",
        ),
        12,
        8,
    )
    lay.add(
        histogram(
            "Lifetime distribution",
            "Lifetimes of the (instance, stream, filter, IP) seen over the dashboard's range.",
            f.lifetime(),
            "s",
        ),
        12,
        8,
    )
    return lay.panels


# --------------------------------------------------------------------------- variables


def variables(kind):
    otel = kind == "otel"
    status = "reaction_up" if otel else "reaction_status_info"
    matches = Names(otel).matches
    ds_var = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "regex": "",
        "hide": 0,
        "current": {},
        "options": [],
        "refresh": 1,
        "description": (
            "A Prometheus-type data source: VictoriaMetrics through Grafana's Prometheus data source"
            if kind == "victoriametrics"
            else "A Prometheus data source"
        )
        + ". Set its scrape interval to the scrape job's: it is the smallest $__interval.",
    }

    def query_var(name, label, query, description):
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DS,
            "definition": query,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
            "refresh": 2,
            "regex": "",
            "sort": 1,
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
            "hide": 0,
            "description": description,
        }

    return [
        ds_var,
        query_var(
            "instance",
            "Instance",
            'label_values(%s{job=~"reaction.*"}, instance)' % status,
            "Instances of the exporter (scrape jobs whose name starts with `reaction`).",
        ),
        query_var(
            "stream",
            "Stream",
            'label_values(%s{instance=~"$instance"}, stream)' % matches,
            "Streams that matched in the range.",
        ),
        query_var(
            "filter",
            "Filter",
            'label_values(%s{instance=~"$instance",stream=~"$stream"}, filter)' % matches,
            "Filters that matched in the range.",
        ),
        {
            "name": "ip",
            "label": "IP (regex)",
            "type": "textbox",
            "query": ".*",
            "current": {"text": ".*", "value": ".*"},
            "options": [{"selected": True, "text": ".*", "value": ".*"}],
            "hide": 0,
            "description": "A regular expression on the `ip` pattern label, `.*` for all. The IP tables link here.",
        },
    ]


# --------------------------------------------------------------------------- dashboards

DASHBOARDS = {
    "prometheus": {
        "file": "reaction-prometheus.json",
        "uid": "reaction-prometheus",
        "title": "reaction (Prometheus)",
        "description": "reaction-metrics-exporter's /metrics scraped by Prometheus: legacy names, counts since the last scrape.",
    },
    "victoriametrics": {
        "file": "reaction-victoriametrics.json",
        "uid": "reaction-victoriametrics",
        "title": "reaction (VictoriaMetrics)",
        "description": "reaction-metrics-exporter's /metrics scraped by VictoriaMetrics or vmagent: legacy names, counts since the last scrape, MetricsQL.",
    },
    "otel": {
        "file": "reaction-otel.json",
        "uid": "reaction-otel",
        "title": "reaction (OpenTelemetry Collector)",
        "description": "reaction-metrics-exporter's OTLP push through an OpenTelemetry Collector (deltatocumulative, prometheus exporter): cumulative counters.",
    },
}


def dashboard(kind):
    meta = DASHBOARDS[kind]
    used = sorted({p["type"] for p in panels(Flavour(kind)) if p["type"] != "row"})
    requires = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
    ] + [{"type": "panel", "id": t, "name": t, "version": ""} for t in used]
    return {
        "__inputs": [],
        "__requires": requires,
        "annotations": {"list": []},
        "description": meta["description"],
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "liveNow": False,
        "panels": panels(Flavour(kind)),
        "refresh": "1m",
        "schemaVersion": 39,
        "tags": ["reaction", "reaction-metrics-exporter"],
        "templating": {"list": variables(kind)},
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": meta["title"],
        "uid": meta["uid"],
        "version": 1,
        "weekStart": "",
    }


def render(kind):
    return json.dumps(dashboard(kind), indent=2, ensure_ascii=False) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for kind, meta in DASHBOARDS.items():
        path = os.path.join(HERE, meta["file"])
        text = render(kind)
        if check:
            try:
                with open(path, encoding="utf-8") as fh:
                    if fh.read() != text:
                        stale.append(meta["file"])
            except FileNotFoundError:
                stale.append(meta["file"])
        else:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
    if stale:
        print("not up to date (run python3 dashboards/generate.py): " + ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
