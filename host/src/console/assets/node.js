// The Node page: what the machine is, what executors it has and the
// limits and policy in force, from `/info` and `/health`.

import { getJson } from "./api.js";
import { el, facts, fill, mb, when } from "./dom.js";
import { every, show } from "./view.js";

const bytes = (n) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : `${Math.round(n / (1 << 20))} MiB`);

/** The limits a task gets by default, and the most it may ask for. */
function limitRows(limits) {
  if (!limits) return [];
  const { defaults: d, maxima: m } = limits;
  const pair = (a, b) => `${a} (at most ${b})`;
  return [
    ["Memory", pair(bytes(d.memory_bytes), bytes(m.memory_bytes))],
    ["Time", pair(`${d.timeout_seconds} s`, `${m.timeout_seconds} s`)],
    ["Output", pair(bytes(d.max_output_bytes), bytes(m.max_output_bytes))],
    ["Workspace", pair(bytes(d.workspace_bytes), bytes(m.workspace_bytes))],
    ["Fuel", pair(d.fuel ?? "unmetered", m.fuel ?? "unmetered")],
    ["CPUs, pids", pair(`${d.cpus}, ${d.pids}`, `${m.cpus}, ${m.pids}`)],
  ];
}

export function nodeView() {
  const body = el("div", { id: "node" }, el("p", { class: "muted" }, "Loading…"));
  show(el("h1", {}, "Node"), body);
  every(5000, async () => {
    const [info, health] = await Promise.all([getJson("/info"), getJson("/health")]);
    const cp = health.control_plane;
    const controlPlane = cp
      ? `${cp.state} to ${cp.url} since ${when(cp.since)}; ${cp.pending_reports} reports pending${cp.last_error ? `; last error: ${cp.last_error}` : ""}`
      : "none (standalone)";
    const backends = (info.llm_backends || []).map(
      (b) =>
        `${b.name} (${b.url}${b.gpu ? ", GPU" : ""}): ` +
        (b.available ? `up, ${b.models.length} models` : "unreachable"),
    );
    fill(body,
      el(
        "div",
        { class: "grid" },
        el(
          "section",
          { class: "card" },
          el("h2", {}, "This machine"),
          facts([
            ["Worker", el("span", { id: "worker-id" }, info.worker_id)],
            ["Host", info.hostname],
            ["Version", info.version],
            ["Status", el("span", { id: "node-status", class: `state state-${health.status}` }, health.status)],
            ["OS / arch", `${info.os} / ${info.arch}`],
            ["CPU", `${info.cpu_model || "unknown"} (${info.cpu_cores} cores, ${info.cpu_threads} threads)`],
            ["Memory", `${mb(health.memory_available_mb) || "?"} free of ${mb(health.memory_total_mb) || "?"}`],
            ["Load", (health.load_average || []).join(" ")],
            ["Temperature", health.temperature_c === null ? null : `${health.temperature_c} °C`],
            ["Jobs disk", `${mb(health.jobs_disk_available_mb) || "?"} free (${health.jobs_path})`],
            ["Uptime", `${health.uptime_seconds} s`],
          ]),
        ),
        el(
          "section",
          { class: "card" },
          el("h2", {}, "Executors"),
          facts([
            ["Executors", (info.executors || []).join(", ")],
            ["Modes allowed", (info.runtime_modes || []).join(", ")],
            ["Docker", (info.executors || []).includes("docker") ? "engine reachable" : "not available"],
            ["Model servers", backends.length ? backends.join("; ") : "none configured"],
            ["Control plane", controlPlane],
            ["Running", `${health.running_jobs} of ${health.max_concurrent_jobs}`],
            ["Queued", `${health.queue_depth}`],
          ]),
        ),
        el(
          "section",
          { class: "card" },
          el("h2", {}, "Limits and policy"),
          facts([
            ...limitRows(info.limits),
            ["Task types", (info.task_types || []).join(", ")],
            ["Tools", (info.tools || []).join(", ") || "none"],
            ["Uploads", `${info.uploads?.max_mb} MiB; uploaded components ${info.uploads?.components ? "run" : "refused"}`],
            ["Image pull", typeof info.image_pull === "string" ? info.image_pull : JSON.stringify(info.image_pull)],
            ["Fuel metering", info.wasm?.fuel_metering ? "on" : "off"],
            ["Receipts", info.receipts ? "signed" : "off"],
            ["Identity", info.identity?.fingerprint],
          ]),
        ),
      ),
    );
  });
}
