"""The dashboard's HTML: a login page, and one page that renders /api/state every two seconds."""

_STYLE = """
body{font:14px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2430}
header{background:#1d2430;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}
header h1{font-size:18px;margin:0} header span{opacity:.7;font-size:12px}
main{padding:12px 20px;display:grid;grid-template-columns:1fr 1fr;gap:14px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px 12px;overflow:auto}
section.wide{grid-column:1/3} h2{font-size:15px;margin:2px 0 8px}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eef0f3;white-space:nowrap}
th{color:#5b6472;font-weight:600} tr.call{cursor:pointer} tr.call:hover{background:#f0f4ff}
.success,.running,.deployed,.ready{color:#17803d} .failure,.timeout,.init_failure,.internal_failure,.preempted{color:#c0262d}
.queued,.cancelled,.stopped{color:#8a6d00} pre{background:#111827;color:#e5e7eb;padding:8px;max-height:320px;overflow:auto;font-size:12px}
.empty{color:#8a93a0} form{margin:80px auto;max-width:360px;background:#fff;padding:24px;border:1px solid #dde1e7;border-radius:6px}
input{width:100%;padding:8px;margin:8px 0;box-sizing:border-box} button{padding:8px 16px}
"""

LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>gpu-fabric: sign in</title><style>%s</style></head>
<body><form method="post" action="/login"><h2>gpu-fabric dashboard</h2>
<p>Paste the fabric's token (printed by <code>gpufabric serve</code>, or GPUFABRIC_TOKEN).</p>
<input type="password" name="token" id="token" placeholder="token" autofocus>
<button type="submit">Sign in</button>{error}</form></body></html>""".replace("%s", _STYLE, 1)

DASHBOARD_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>gpu-fabric</title><style>%s</style></head>
<body><header><h1>gpu-fabric</h1><span id="updated">loading…</span><span style="margin-left:auto"><a style="color:#9cf" href="/metrics">metrics</a> · <a style="color:#9cf" href="/logout">sign out</a></span></header>
<main>
<section><h2>Apps</h2><div id="apps"></div></section>
<section><h2>Workers</h2><div id="workers"></div></section>
<section class="wide"><h2>Functions</h2><div id="functions"></div></section>
<section class="wide"><h2>Calls</h2><div id="calls"></div><div id="logs"></div></section>
<section><h2>Web endpoints</h2><div id="endpoints"></div></section>
<section><h2>Schedules</h2><div id="schedules"></div></section>
<section><h2>Cost over time</h2><div id="cost"></div></section>
<section><h2>Volumes</h2><div id="volumes"></div></section>
</main>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const when = t => t ? new Date(t * 1000).toLocaleTimeString() : "-";
const secs = s => s == null ? "-" : (s < 1 ? (s * 1000).toFixed(0) + " ms" : s.toFixed(1) + " s");
let selected = null;
function table(id, rows, cols, rowAttrs) {
  const el = document.getElementById(id);
  if (!rows.length) { el.innerHTML = '<div class="empty">none</div>'; return; }
  el.innerHTML = "<table><tr>" + cols.map(c => "<th>" + esc(c[0]) + "</th>").join("") + "</tr>" +
    rows.map(r => "<tr " + (rowAttrs ? rowAttrs(r) : "") + ">" + cols.map(c => "<td>" + c[1](r) + "</td>").join("") + "</tr>").join("") + "</table>";
}
const cls = s => '<span class="' + esc(s) + '">' + esc(s) + "</span>";
function plot(cost) {
  const w = 420, h = 140, p = cost.points; if (!p.length) return "";
  const t0 = p[0][0], t1 = p[p.length - 1][0], max = Math.max(...p.map(x => x[1]), 1e-9);
  const pts = p.map(x => ((x[0] - t0) / (t1 - t0 || 1) * (w - 50) + 45).toFixed(1) + "," + (h - 20 - x[1] / max * (h - 35)).toFixed(1)).join(" ");
  return '<svg id="cost-plot" width="' + w + '" height="' + h + '" style="background:#fafbfc">' +
    '<polyline fill="none" stroke="#2563eb" stroke-width="2" points="' + pts + '"/>' +
    '<text x="2" y="14" font-size="11">$' + max.toFixed(4) + '</text><text x="2" y="' + (h - 22) + '" font-size="11">$0</text>' +
    '<text x="45" y="' + (h - 4) + '" font-size="11">' + when(t0) + '</text><text x="' + (w - 70) + '" y="' + (h - 4) + '" font-size="11">' + when(t1) + "</text></svg>" +
    "<div>total $" + cost.total_usd.toFixed(4) + " · GPU time " + secs(cost.gpu_seconds) + "</div>";
}
async function showLogs(id) {
  selected = id;
  const r = await fetch("/api/calls/" + encodeURIComponent(id) + "/logs");
  const lines = r.ok ? await r.json() : [];
  document.getElementById("logs").innerHTML = "<h2>Logs of " + esc(id) + "</h2><pre id=\\"call-logs\\">" +
    (lines.map(l => esc(l.text)).join("") || "(no output)") + "</pre>";
}
async function refresh() {
  const r = await fetch("/api/state");
  if (r.status === 401) { location.href = "/login"; return; }
  const s = await r.json();
  document.getElementById("updated").textContent = "updated " + when(s.now);
  table("apps", s.apps, [["name", a => esc(a.name)], ["kind", a => esc(a.kind)], ["state", a => cls(a.state)],
    ["functions", a => esc(a.functions.join(", "))], ["containers", a => a.containers], ["created", a => when(a.created_at)],
    ["spend", a => "$" + a.spend_usd.toFixed(4)]]);
  table("workers", s.workers, [["worker", w => esc(w.worker_id)], ["provider", w => esc(w.provider)], ["region", w => esc(w.region)],
    ["GPU", w => esc(w.gpus)], ["$/h", w => w.price_per_hour.toFixed(2)], ["preemptible", w => w.preemptible ? "yes" : "no"],
    ["state", w => cls(w.preempted ? "preempted" : "ready")], ["containers", w => w.containers]]);
  table("functions", s.functions, [["app", f => esc(f.app)], ["function", f => esc(f.name)], ["GPU", f => esc(f.gpu)],
    ["queued", f => f.queued], ["running", f => f.running], ["containers", f => f.containers + " (" + f.ready + " ready)"],
    ["min", f => f.min_containers], ["avg", f => secs(f.avg_duration_s)], ["web", f => f.web ? "yes" : ""], ["schedule", f => esc(f.schedule)]]);
  table("calls", s.calls, [["call", c => esc(c.call_id)], ["app", c => esc(c.app)], ["function", c => esc(c.function)],
    ["kind", c => esc(c.kind)], ["status", c => cls(c.status)], ["inputs", c => c.num_done + "/" + c.num_inputs],
    ["retries", c => c.retries], ["started", c => when(c.created_at)], ["duration", c => secs(c.duration_s)], ["error", c => esc(c.error)]],
    c => 'class="call" data-call="' + esc(c.call_id) + '" onclick="showLogs(this.dataset.call)"');
  table("endpoints", s.endpoints, [["label", e => '<a href="' + esc(e.url) + '">' + esc(e.label) + "</a>"], ["app", e => esc(e.app)],
    ["function", e => esc(e.function + (e.method ? "." + e.method : ""))], ["type", e => esc(e.type)], ["token", e => e.requires_token ? "required" : ""]]);
  table("schedules", s.schedules, [["function", x => esc(x.app + "." + x.function)], ["schedule", x => esc(x.schedule)],
    ["last tick", x => when(x.last_tick)], ["recent runs", x => x.runs.map(r => cls(r.status)).join(" ") || "-"]]);
  table("volumes", s.volumes, [["name", v => esc(v.name)]]);
  document.getElementById("cost").innerHTML = plot(s.cost);
  if (selected) showLogs(selected);
}
refresh(); setInterval(refresh, 2000);
</script></body></html>""" % _STYLE
