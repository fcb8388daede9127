#!/usr/bin/env python3
"""Draws the main panels of dashboards/nsexporter.json from a running Prometheus into a PNG.

An honest stand-in for a Grafana screenshot where no Grafana runs: the queries are the
dashboard's own, read from the JSON, with the variables replaced as Grafana would; only the
drawing is matplotlib's. `cargo test --test dashboard` calls it with NSX_RENDER_DASHBOARD=1.

    /usr/bin/python3 dashboards/render.py --prometheus=http://127.0.0.1:9090 --range=3600

Needs matplotlib (Debian: python3-matplotlib).
"""

import argparse
import json
import math
import pathlib
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent

# (panel title, how to draw it), in the order of the picture's grid.
PANELS = [
    ("Namespaces by type", "lines"),
    ("Created (+) and destroyed (−) per second", "lines"),
    ("Lifetime of destroyed namespaces", "heatmap"),
    ("Unexpected sharing findings, newest first", "table"),
    ("Scan duration", "lines"),
    ("Scan errors by reason", "lines"),
]
STATS = [
    "Exporters up / down",
    "Oldest scan age",
    "Namespaces",
    "Active sharing findings",
    "Containers in host namespaces",
    "Max resident memory",
]


def substitute(expr, variables):
    for name, value in variables:
        expr = expr.replace("${%s}" % name, value).replace("$" + name, value)
    return expr


def query(base, path, **params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as r:
        answer = json.load(r)
    if answer.get("status") != "success":
        raise SystemExit(f"{url}: {answer}")
    return answer["data"]["result"]


def legend(fmt, labels):
    if not fmt or fmt == "__auto":
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{%s}}" % k, v)
    return out


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def negated_refs(panel):
    """refIds drawn below the axis (Grafana's negative-Y transform)."""
    refs = set()
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"]["id"] == "byFrameRefID" and any(
            p["id"] == "custom.transform" and p.get("value") == "negative-Y" for p in o["properties"]
        ):
            refs.add(o["matcher"]["options"])
    return refs


def draw_lines(ax, panel, ranged):
    negative = negated_refs(panel)
    for t in panel["targets"]:
        for series in ranged(t["expr"]):
            xs = [float(v[0]) for v in series["values"]]
            ys = [float(v[1]) for v in series["values"]]
            if t["refId"] in negative:
                ys = [-y for y in ys]
            ax.plot(xs, ys, linewidth=1.2, label=legend(t.get("legendFormat"), series["metric"]))
    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    ax.set_ylabel({"s": "seconds", "cps": "per second"}.get(unit, ""))
    if negative:
        ax.axhline(0, color="grey", linewidth=0.6)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=6, ncol=2 if len(handles) > 6 else 1, loc="upper left")
    ax.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(lambda x, _: time.strftime("%H:%M:%S", time.localtime(x)))
    )


def draw_heatmap(ax, panel, ranged):
    series = ranged(panel["targets"][0]["expr"])
    buckets = sorted(series, key=lambda s: float(s["metric"]["le"]))
    if not buckets:
        ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
        return
    times = [float(v[0]) for v in buckets[0]["values"]]
    cumulative = [[float(v[1]) for v in b["values"]] for b in buckets]
    # Prometheus buckets are cumulative; a heatmap cell is one bucket's own count.
    rows = [
        [c - (cumulative[i - 1][j] if i else 0.0) for j, c in enumerate(row)]
        for i, row in enumerate(cumulative)
    ]
    rows = [[0.0 if math.isnan(v) else v for v in r] for r in rows]
    # Keep one empty bucket above the highest one used: 30d and +Inf are rarely of interest.
    used = max((i for i, r in enumerate(rows) if any(r)), default=0)
    rows, buckets = rows[: used + 2], buckets[: used + 2]
    ax.imshow(rows, aspect="auto", origin="lower", cmap="Oranges", interpolation="nearest",
              extent=(times[0], times[-1], -0.5, len(rows) - 0.5))
    ax.set_yticks(range(len(buckets)))
    ax.set_yticklabels([f"≤{b['metric']['le']}s" for b in buckets], fontsize=6)
    ax.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(lambda x, _: time.strftime("%H:%M:%S", time.localtime(x)))
    )


def draw_table(ax, panel, instant):
    ax.axis("off")
    rows = {}
    columns = ["rule", "type", "runtime", "container_id"]
    for t in panel["targets"]:
        for s in instant(t["expr"]):
            key = tuple(s["metric"].get(c, "") for c in columns)
            rows.setdefault(key, {})[t["refId"]] = float(s["value"][1]) / 1000
    if not rows:
        ax.text(0.5, 0.5, "no findings", ha="center", transform=ax.transAxes)
        return
    fmt = lambda t: time.strftime("%H:%M:%S", time.localtime(t)) if t else ""  # noqa: E731
    body = sorted(rows.items(), key=lambda kv: -kv[1].get("A", 0))
    cells = [[fmt(v.get("A")), fmt(v.get("B")), *k[:3], k[3][:12]] for k, v in body][:12]
    table = ax.table(cellText=cells, colLabels=["first seen", "last seen", *columns],
                     loc="upper center", cellLoc="left",
                     colWidths=[0.15, 0.15, 0.25, 0.1, 0.13, 0.22])
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.scale(1, 1.3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090")
    ap.add_argument("--dashboard", default=str(HERE / "nsexporter.json"))
    ap.add_argument("--out", default=str(HERE / "nsexporter.png"))
    ap.add_argument("--range", type=int, default=3600, help="seconds back from now")
    ap.add_argument("--job", default="nsexporter")
    ap.add_argument("--rate-interval", default=None,
                    help="$__rate_interval (default: 4 steps of the query)")
    args = ap.parse_args()

    step = max(1, args.range // 300)
    variables = [
        ("__rate_interval", args.rate_interval or f"{max(4, 4 * step)}s"),
        ("__interval", f"{step}s"),
        ("__range", f"{args.range}s"),
        ("instance", ".+"),
        ("job", args.job),
    ]
    end = time.time()

    def ranged(expr):
        return query(args.prometheus, "/api/v1/query_range", query=substitute(expr, variables),
                     start=end - args.range, end=end, step=step)

    def instant(expr):
        return query(args.prometheus, "/api/v1/query", query=substitute(expr, variables), time=end)

    dashboard = json.loads(pathlib.Path(args.dashboard).read_text())
    by_title = {p["title"]: p for p in all_panels(dashboard["panels"]) if p["type"] != "row"}

    fig = plt.figure(figsize=(16, 10), dpi=100)
    grid = fig.add_gridspec(4, 3, height_ratios=[0.22, 1, 1, 0.05], hspace=0.4, wspace=0.25)
    fig.suptitle(f"{dashboard['title']} — last {args.range}s from {args.prometheus}", fontsize=13)

    strip = fig.add_subplot(grid[0, :])
    strip.axis("off")
    for i, title in enumerate(STATS):
        panel = by_title[title]
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        values = []
        for t in panel["targets"]:
            for s in instant(t["expr"]):
                v = float(s["value"][1])
                text = (f"{v / 2**20:.0f} MiB" if unit == "bytes"
                        else f"{v:.1f} s" if unit == "s" else f"{v:g}")
                values.append(f"{legend(t.get('legendFormat'), s['metric'])} {text}")
        x = (i + 0.5) / len(STATS)
        strip.text(x, 0.9, title, ha="center", va="top", fontsize=9, color="dimgrey",
                   transform=strip.transAxes)
        strip.text(x, 0.55, "\n".join(values) or "no data", ha="center", va="top", fontsize=12,
                   weight="bold", transform=strip.transAxes)

    for i, (title, kind) in enumerate(PANELS):
        ax = fig.add_subplot(grid[1 + i // 3, i % 3])
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=7)
        panel = by_title[title]
        if kind == "lines":
            draw_lines(ax, panel, ranged)
        elif kind == "heatmap":
            draw_heatmap(ax, panel, ranged)
        else:
            draw_table(ax, panel, instant)

    note = fig.add_subplot(grid[3, :])
    note.axis("off")
    note.text(0, 0.5, "Queries from " + pathlib.Path(args.dashboard).name + " with "
              + ", ".join(f"${k}={v}" for k, v in variables) + ". Drawn by dashboards/render.py, "
              "not Grafana.", fontsize=8, color="dimgrey", transform=note.transAxes)
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
