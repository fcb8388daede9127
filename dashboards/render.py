#!/usr/bin/env python3
"""Draws every panel of dashboards/nsexporter.json from a running Prometheus into a PNG.

An honest stand-in for a Grafana screenshot where no Grafana runs: the panels are laid out on
the JSON's own 24-column grid (a collapsed row drawn open, as if clicked), the queries are the
dashboard's own, with the variables replaced as Grafana would; only the drawing is matplotlib's.
The SHA-256 of the dashboard JSON goes into the PNG's metadata (tEXt `nsexporter-dashboard-sha256`)
so that `tests/it/dashboard.rs` can tell a picture drawn from another version of the JSON.

    /usr/bin/python3 dashboards/render.py --prometheus=http://127.0.0.1:9090 --range=600
    /usr/bin/python3 dashboards/render.py --list-types    # the panel types it can draw

A panel type it cannot draw fails the run (exit 2, naming the type) before any query.
Needs matplotlib (Debian: python3-matplotlib); scripts/dashboard-scenario draws the committed one.
"""

import argparse
import hashlib
import json
import math
import pathlib
import sys
import time
import urllib.parse
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
METADATA_KEY = "nsexporter-dashboard-sha256"
# Grafana's grid: 24 columns; a row unit is 30 px plus an 8 px margin, a column about 80 px on a
# 1920 px screen: so a row unit is about half a column wide.
COLUMNS = 24
COLUMN_INCHES = 0.85
ROW_INCHES = 0.40


def substitute(expr, variables):
    for name, value in variables:
        expr = expr.replace("${%s}" % name, value).replace("$" + name, value)
    return expr


def query(base, path, **params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as r:
        answer = json.load(r)
    if answer.get("status") != "success":
        raise SystemExit(f"render.py: {url}: {answer}")
    return answer["data"]["result"]


def legend(fmt, labels):
    if not fmt or fmt == "__auto":
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{%s}}" % k, v).replace("{{ %s }}" % k, v)
    # A label the series lacks reads as empty in Grafana.
    while "{{" in out and "}}" in out:
        a = out.index("{{")
        b = out.index("}}", a)
        out = out[:a] + out[b + 2:]
    return out.strip()


def fmt_value(v, unit):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if unit == "bytes":
        for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(v) >= scale:
                return f"{v / scale:.1f} {name}"
        return f"{v:.0f} B"
    if unit == "s":
        if abs(v) >= 3600:
            return f"{v / 3600:.1f} h"
        if abs(v) >= 60:
            return f"{v / 60:.1f} min"
        if abs(v) >= 1 or v == 0:
            return f"{v:.2f} s"
        return f"{v * 1000:.1f} ms"
    if unit == "cps":
        return f"{v:.3g}/s"
    if unit == "percentunit":
        return f"{100 * v:.2f}%"
    if unit and unit.startswith("dateTime"):
        return time.strftime("%H:%M:%S", time.localtime(v / 1000))
    return f"{v:.4g}"


def unit_of(panel):
    return panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")


def time_axis(ax, start, end):
    import matplotlib.ticker

    ax.set_xlim(start, end)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    ax.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(lambda x, _: time.strftime("%H:%M", time.localtime(x)))
    )


def no_data(ax, text="No data"):
    ax.text(0.5, 0.5, text, ha="center", va="center", color="grey", fontsize=11,
            transform=ax.transAxes)


def negated_refs(panel):
    """refIds drawn below the axis (Grafana's negative-Y transform)."""
    refs = set()
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"]["id"] == "byFrameRefID" and any(
            p["id"] == "custom.transform" and p.get("value") == "negative-Y" for p in o["properties"]
        ):
            refs.add(o["matcher"]["options"])
    return refs


def draw_row(ax, panel, q):
    ax.axis("off")
    mark = "▸ " if panel.get("collapsed") else "▾ "
    note = "  (collapsed in the dashboard; drawn open)" if panel.get("collapsed") else ""
    ax.text(0, 0.5, mark + panel["title"] + note, fontsize=12, weight="bold", va="center",
            transform=ax.transAxes)
    return True


def draw_stat(ax, panel, q):
    ax.axis("off")
    unit = unit_of(panel)
    values = []
    for t in panel["targets"]:
        for s in q.instant(t["expr"]):
            values.append((legend(t.get("legendFormat"), s["metric"]),
                           fmt_value(float(s["value"][1]), unit)))
    if not values:
        no_data(ax)
        return False
    size = 20 if len(values) == 1 else 13
    lines = [f"{v}" if len(values) == 1 else f"{name}: {v}" for name, v in values]
    ax.text(0.5, 0.45, "\n".join(lines), ha="center", va="center", fontsize=size,
            weight="bold", color="#2f7d32", transform=ax.transAxes)
    return True


def draw_timeseries(ax, panel, q):
    negative = negated_refs(panel)
    unit = unit_of(panel)
    drawn = 0
    for t in panel["targets"]:
        for series in q.ranged(t["expr"]):
            xs = [float(v[0]) for v in series["values"]]
            ys = [float(v[1]) for v in series["values"]]
            if t["refId"] in negative:
                ys = [-y for y in ys]
            ax.plot(xs, ys, linewidth=1.1, label=legend(t.get("legendFormat"), series["metric"]))
            drawn += 1
    time_axis(ax, q.start, q.end)
    ax.tick_params(labelsize=7)
    import matplotlib.ticker

    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: fmt_value(y, unit)))
    if negative:
        ax.axhline(0, color="grey", linewidth=0.6)
    if not drawn:
        no_data(ax)
        return False
    ax.legend(fontsize=6, ncol=3 if drawn > 8 else 2 if drawn > 4 else 1, loc="upper left",
              framealpha=0.6)
    return True


def draw_heatmap(ax, panel, q):
    series = q.ranged(panel["targets"][0]["expr"])
    buckets = sorted(series, key=lambda s: float(s["metric"]["le"]))
    time_axis(ax, q.start, q.end)
    ax.tick_params(labelsize=7)
    if not buckets:
        no_data(ax)
        return False
    times = [float(v[0]) for v in buckets[0]["values"]]
    cumulative = [[float(v[1]) for v in b["values"]] for b in buckets]
    # Prometheus buckets are cumulative; a heatmap cell is one bucket's own count.
    rows = [
        [c - (cumulative[i - 1][j] if i and j < len(cumulative[i - 1]) else 0.0)
         for j, c in enumerate(row)]
        for i, row in enumerate(cumulative)
    ]
    rows = [[0.0 if math.isnan(v) else max(v, 0.0) for v in r] for r in rows]
    width = min(len(r) for r in rows)
    rows = [r[:width] for r in rows]
    # Keep one empty bucket above the highest one used: 30d and +Inf are rarely of interest.
    used = max((i for i, r in enumerate(rows) if any(r)), default=0)
    rows, buckets = rows[: used + 2], buckets[: used + 2]
    ax.imshow(rows, aspect="auto", origin="lower", cmap="Oranges", interpolation="nearest",
              extent=(times[0], times[width - 1], -0.5, len(rows) - 0.5))
    time_axis(ax, q.start, q.end)
    ax.set_yticks(range(len(buckets)))
    ax.set_yticklabels([f"≤{b['metric']['le']}s" for b in buckets], fontsize=6)
    return any(any(r) for r in rows)


def table_frame(panel, q):
    """Grafana's table from instant queries: one row per label set, `Value` (or `Value #A`
    with several queries, joined on the labels as the `merge` transformation does), then the
    `organize` and `sortBy` transformations."""
    targets = panel["targets"]
    rows = {}
    for t in targets:
        value = "Value" if len(targets) == 1 else f"Value #{t['refId']}"
        for s in q.instant(t["expr"]):
            key = tuple(sorted(s["metric"].items()))
            rows.setdefault(key, dict(key))[value] = float(s["value"][1])
    rows = list(rows.values())
    columns = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    for tr in panel.get("transformations", []):
        opts = tr.get("options", {})
        if tr["id"] == "organize":
            columns = [c for c in columns if not opts.get("excludeByName", {}).get(c)]
            rename = opts.get("renameByName", {})
            rows = [{rename.get(k) or k: v for k, v in r.items()} for r in rows]
            columns = [rename.get(c) or c for c in columns]
            index = {rename.get(k) or k: i for k, i in opts.get("indexByName", {}).items()}
            columns.sort(key=lambda c: index.get(c, len(index)))
        elif tr["id"] == "sortBy":
            for s in reversed(opts.get("sort", [])):
                rows.sort(key=lambda r: (r.get(s["field"]) is not None, r.get(s["field"]) or 0),
                          reverse=bool(s.get("desc")))
        elif tr["id"] != "merge":
            raise SystemExit(f"render.py: panel {panel['title']!r}: cannot apply "
                             f"transformation {tr['id']!r}")
    return columns, rows


def draw_table(ax, panel, q):
    ax.axis("off")
    columns, rows = table_frame(panel, q)
    if not rows:
        no_data(ax)
        return False
    units = {}
    colours = {}
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"]["id"] == "byName":
            for p in o["properties"]:
                if p["id"] == "unit":
                    units[o["matcher"]["options"]] = p["value"]
                if p["id"] == "color" and p["value"].get("fixedColor"):
                    colours[o["matcher"]["options"]] = p["value"]["fixedColor"]

    def cell(c, v):
        if v is None:
            return ""
        if isinstance(v, float):
            return fmt_value(v, units.get(c, ""))
        return v[:12] if c == "container_id" else v[:40]

    height_rows = max(1, int(panel["gridPos"]["h"] * 1.6) - 2)
    body = [[cell(c, r.get(c)) for c in columns] for r in rows[:height_rows]]
    more = len(rows) - len(body)
    widths = [max(len(c), *(len(b[i]) for b in body)) + 2 for i, c in enumerate(columns)]
    total = sum(widths)
    table = ax.table(cellText=body, colLabels=columns, loc="upper left", cellLoc="left",
                     colWidths=[w / total for w in widths])
    table.auto_set_font_size(False)
    table.set_fontsize(6.5)
    for (i, j), c in table.get_celld().items():
        c.set_height(1.0 / (height_rows + 1.5))
        c.set_linewidth(0.3)
        if i == 0:
            c.set_facecolor("#eeeeee")
        elif columns[j] in colours:
            c.get_text().set_color(colours[columns[j]])
    if more > 0:
        ax.text(1, 0, f"+{more} more rows", ha="right", va="bottom", fontsize=6, color="grey",
                transform=ax.transAxes)
    return True


def draw_bargauge(ax, panel, q):
    unit = unit_of(panel)
    bars = []
    for t in panel["targets"]:
        for s in q.instant(t["expr"]):
            v = float(s["value"][1])
            if not math.isnan(v):
                bars.append((legend(t.get("legendFormat"), s["metric"]), v))
    if not bars:
        ax.axis("off")
        no_data(ax)
        return False
    names = [b[0] for b in bars][::-1]
    values = [b[1] for b in bars][::-1]
    ax.barh(range(len(bars)), values, color="#3d85c6", height=0.7)
    ax.set_yticks(range(len(bars)))
    ax.set_yticklabels(names, fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    top = max(values) or 1
    for i, v in enumerate(values):
        ax.text(v + top * 0.01, i, fmt_value(v, unit), va="center", fontsize=7)
    ax.set_xlim(0, top * 1.2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return True


# The panel types this script can draw; `--list-types` prints them, and tests/it/dashboard.rs
# compares them with the dashboard's.
DRAW = {
    "bargauge": draw_bargauge,
    "heatmap": draw_heatmap,
    "row": draw_row,
    "stat": draw_stat,
    "table": draw_table,
    "timeseries": draw_timeseries,
}


def laid_out(panels):
    """(panel, x, y, w, h) on the grid, a collapsed row's panels placed open below it and what
    follows pushed down, as Grafana does when the row is clicked open."""
    out = []
    shift = 0
    for p in panels:
        g = p["gridPos"]
        out.append((p, g["x"], g["y"] + shift, g["w"], g["h"]))
        inner = p.get("panels") or []
        if p["type"] == "row" and p.get("collapsed") and inner:
            top = min(i["gridPos"]["y"] for i in inner)
            bottom = 0
            for i in inner:
                gi = i["gridPos"]
                y = g["y"] + shift + g["h"] + gi["y"] - top
                out.append((i, gi["x"], y, gi["w"], gi["h"]))
                bottom = max(bottom, gi["y"] - top + gi["h"])
            shift += bottom
    return out


class Queries:
    def __init__(self, base, variables, start, end, step):
        self.base, self.variables = base, variables
        self.start, self.end, self.step = start, end, step

    def expr(self, expr):
        out = substitute(expr, self.variables)
        if "$" in out:
            raise SystemExit(f"render.py: unknown variable left in `{out}`")
        return out

    def ranged(self, expr):
        return query(self.base, "/api/v1/query_range", query=self.expr(expr), start=self.start,
                     end=self.end, step=self.step)

    def instant(self, expr):
        return query(self.base, "/api/v1/query", query=self.expr(expr), time=self.end)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090")
    ap.add_argument("--dashboard", default=str(HERE / "nsexporter.json"))
    ap.add_argument("--out", default=str(HERE / "nsexporter.png"))
    ap.add_argument("--range", type=int, default=600, help="seconds back from now")
    ap.add_argument("--job", default="nsexporter", help="$job (Grafana's All: every job)")
    ap.add_argument("--scrape-interval", type=int, default=1,
                    help="the data source's scrape interval in seconds, for $__rate_interval")
    ap.add_argument("--list-types", action="store_true",
                    help="print the panel types this script can draw, one a line, and exit")
    args = ap.parse_args()

    if args.list_types:
        print("\n".join(sorted(DRAW)))
        return 0

    raw = pathlib.Path(args.dashboard).read_bytes()
    dashboard = json.loads(raw)
    layout = laid_out(dashboard["panels"])
    unknown = sorted({p["type"] for p, *_ in layout} - set(DRAW))
    if unknown:
        print(f"render.py: cannot draw panel type(s) {', '.join(unknown)} of {args.dashboard}; "
              "add a draw function to DRAW", file=sys.stderr)
        return 2

    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # `$job` in text is not TeX
    import matplotlib.pyplot as plt

    # As Grafana: $__interval is range / max data points (about 300 for a half-screen panel
    # here), $__rate_interval is max($__interval + scrape interval, 4 × scrape interval).
    step = max(1, args.range // 300)
    rate = max(step + args.scrape_interval, 4 * args.scrape_interval)
    variables = [  # longer names first: `$__interval` must not eat `$__interval_ms`
        ("__rate_interval", f"{rate}s"),
        ("__interval_ms", str(step * 1000)),
        ("__interval", f"{step}s"),
        ("__range_s", str(args.range)),
        ("__range_ms", str(args.range * 1000)),
        ("__range", f"{args.range}s"),
        ("datasource", "prometheus"),
        ("instance", ".+"),
        ("job", args.job),
    ]
    end = time.time()
    q = Queries(args.prometheus, variables, end - args.range, end, step)

    started = time.monotonic()
    rows_total = max(y + h for _, _, y, _, h in layout) + 2
    fig = plt.figure(figsize=(COLUMNS * COLUMN_INCHES, rows_total * ROW_INCHES), dpi=72)
    height = rows_total

    def place(x, y, w, h, pad_top):
        left = (x + 0.35) / COLUMNS
        width = (w - 0.55) / COLUMNS
        bottom = 1 - (y + h - 0.45) / height
        top = 1 - (y + pad_top) / height
        return [left, bottom, width, top - bottom]

    fig.text(0.5, 1 - 0.6 / height, f"{dashboard['title']} — last {args.range} s, "
             f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(end))}",
             ha="center", va="center", fontsize=14, weight="bold")
    drawn = with_data = 0
    empty = []
    for panel, x, y, w, h in layout:
        y += 1  # the title line above the grid
        kind = panel["type"]
        if kind == "row":
            ax = fig.add_axes(place(x, y, w, h, 0.1))
        else:
            frame = fig.add_axes(place(x - 0.1, y, w + 0.2, h + 0.15, 0.0))
            frame.set_xticks([])
            frame.set_yticks([])
            frame.set_facecolor("#fafafa")
            for s in frame.spines.values():
                s.set_color("#cccccc")
            frame.text(0.01, 1 - 0.32 / h, panel["title"], fontsize=9, weight="bold",
                       va="center", transform=frame.transAxes)
            inner_left = 1.6 if kind in ("timeseries", "heatmap") else 0.2
            if kind == "bargauge":
                inner_left = min(w * 0.35, 3.0)
            ax = fig.add_axes(place(x + inner_left, y, w - inner_left, h - 0.1, 0.9))
            ax.set_facecolor("#fafafa")
        if DRAW[kind](ax, panel, q):
            with_data += kind != "row"
        elif kind != "row":
            empty.append(panel["title"])
        drawn += kind != "row"

    fig.text(0.005, 0.3 / height,
             f"Queries from {pathlib.Path(args.dashboard).name} (sha256 "
             f"{hashlib.sha256(raw).hexdigest()[:12]}) with "
             + ", ".join(f"${k}={v}" for k, v in variables if k != "datasource")
             + ". Drawn by dashboards/render.py (matplotlib), not Grafana.",
             fontsize=8, color="dimgrey")
    fig.savefig(args.out, metadata={METADATA_KEY: hashlib.sha256(raw).hexdigest()})
    print(f"{args.out}: {drawn} panels drawn ({with_data} with data) and "
          f"{sum(p['type'] == 'row' for p, *_ in layout)} rows, in "
          f"{time.monotonic() - started:.1f} s")
    for title in empty:
        print(f"  no data: {title}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
