// The Charts page: the last hour of the node's own metrics
// (`/metrics/history`), drawn as SVG line charts.

import { getJson } from "./api.js";
import { el, fill } from "./dom.js";
import { every, show } from "./view.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 160;
const PAD = { left: 48, right: 8, top: 10, bottom: 20 };

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function label(value) {
  if (Number.isInteger(value)) return String(value);
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** A line chart of `series` (`{name, points: [[ms, value|null]]}`) over `[from, to]`. */
function lineChart(id, title, unit, series, from, to) {
  const values = series.flatMap((s) => s.points.map(([, v]) => v)).filter((v) => v !== null);
  const top = Math.max(1e-9, ...values) * 1.1;
  const x = (t) => PAD.left + ((t - from) / Math.max(1, to - from)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);
  const lines = series.flatMap((s, index) => {
    const runs = [[]];
    for (const [t, v] of s.points) {
      if (v === null) runs.push([]);
      else runs[runs.length - 1].push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    }
    return runs
      .filter((run) => run.length)
      .map((run) =>
        run.length === 1
          ? svg("circle", { cx: run[0].split(",")[0], cy: run[0].split(",")[1], r: 3, class: `series s${index}` })
          : svg("polyline", { points: run.join(" "), class: `series s${index}` }),
      );
  });
  const axis = svg(
    "g",
    { class: "axis" },
    svg("line", { x1: PAD.left, y1: HEIGHT - PAD.bottom, x2: WIDTH - PAD.right, y2: HEIGHT - PAD.bottom }),
    svg("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: HEIGHT - PAD.bottom }),
    svg("text", { x: PAD.left - 4, y: PAD.top + 8, "text-anchor": "end" }, label(top)),
    svg("text", { x: PAD.left - 4, y: HEIGHT - PAD.bottom, "text-anchor": "end" }, "0"),
    svg("text", { x: PAD.left, y: HEIGHT - 4 }, `${Math.round((to - from) / 60000)} min ago`),
    svg("text", { x: WIDTH - PAD.right, y: HEIGHT - 4, "text-anchor": "end" }, "now"),
  );
  const latest = series.map((s, index) => {
    const last = [...s.points].reverse().find(([, v]) => v !== null);
    return el("span", { class: `legend s${index}` }, `${s.name}: ${last ? `${label(last[1])} ${unit}` : "—"}`);
  });
  return el(
    "section",
    { class: "card chart", id },
    el("h2", {}, title),
    el("div", { class: "row" }, latest),
    svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": title }, axis, ...lines),
  );
}

export function chartsView() {
  const body = el("div", { id: "charts", class: "grid" }, el("p", { class: "muted" }, "Loading…"));
  const note = el("p", { class: "muted", id: "charts-note" });
  show(el("h1", {}, "Charts"), note, body);
  let interval = 10;
  every(2000, async () => {
    const history = await getJson("/metrics/history");
    interval = history.interval_seconds;
    const samples = history.samples;
    const to = samples.length ? samples[samples.length - 1].at_ms : Date.now();
    const from = Math.min(samples.length ? samples[0].at_ms : to, to - 60000);
    const points = (pick) => samples.map((s) => [s.at_ms, pick(s)]);
    const percentile = (i) => points((s) => (s.duration_ms ? s.duration_ms[i] : null));
    note.textContent = `A sample every ${interval} s, the last hour of them (${samples.length} so far).`;
    fill(
      body,
      lineChart("chart-jobs", "Jobs ended per second", "jobs/s", [{ name: "ended", points: points((s) => s.jobs_per_second) }], from, to),
      lineChart(
        "chart-queue",
        "Queue and running",
        "jobs",
        [
          { name: "queued", points: points((s) => s.queued) },
          { name: "running", points: points((s) => s.running) },
        ],
        from,
        to,
      ),
      lineChart(
        "chart-duration",
        "Task duration",
        "ms",
        [
          { name: "p50", points: percentile(0) },
          { name: "p95", points: percentile(1) },
          { name: "p99", points: percentile(2) },
        ],
        from,
        to,
      ),
      lineChart("chart-memory", "Node memory (resident)", "MiB", [{ name: "rss", points: points((s) => s.rss_mb) }], from, to),
    );
  });
}
