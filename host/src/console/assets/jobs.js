// The Jobs page: newest first, filtered by state, type and origin,
// refreshed while it is open.

import { getJson } from "./api.js";
import { el, fill, stateOf, took, when } from "./dom.js";
import { every, failed, show, shown } from "./view.js";

const STATES = ["queued", "running", "finished", "failed", "cancelled"];

const FRONT_DOORS = ["api", "vera", "splai", "goliat", "mcp"];

function select(name, label, options, chosen) {
  return el(
    "div",
    {},
    el("label", { for: `filter-${name}` }, label),
    el(
      "select",
      { id: `filter-${name}`, name },
      el("option", { value: "" }, "any"),
      options.map((o) => el("option", { value: o, selected: o === chosen }, o)),
    ),
  );
}

export async function jobsView(params) {
  const view = shown;
  const info = await getJson("/info").catch((e) => (failed(e), {}));
  if (view !== shown) return;
  const filters = el(
    "form",
    { class: "filters", id: "job-filters" },
    select("state", "State", STATES, params.get("state")),
    el(
      "div",
      {},
      el("label", { for: "filter-type" }, "Type"),
      el("input", { id: "filter-type", name: "type", type: "text", list: "task-types", value: params.get("type") || "", placeholder: "any" }),
      el("datalist", { id: "task-types" }, ["wasm", "image", ...(info.task_types || [])].map((t) => el("option", { value: t }))),
    ),
    select("origin", "Origin", FRONT_DOORS, params.get("origin")),
  );
  const rows = el("tbody", { id: "job-rows" });
  const table = el(
    "table",
    { id: "jobs" },
    el("thead", {}, el("tr", {}, ["Job", "State", "Type", "Origin", "Submitted", "Took"].map((h) => el("th", {}, h)))),
    rows,
  );
  show(el("h1", {}, "Jobs"), filters, table);
  filters.addEventListener("change", () => {
    const chosen = new URLSearchParams();
    for (const field of filters.elements) if (field.value) chosen.set(field.name, field.value);
    const suffix = chosen.toString();
    location.hash = suffix ? `#/jobs?${suffix}` : "#/jobs";
  });
  const listed = new URLSearchParams({ order: "desc", limit: "100" });
  for (const name of ["state", "type", "origin"]) if (params.get(name)) listed.set(name, params.get(name));
  every(2000, async () => {
    const page = await getJson(`/jobs?${listed}`);
    fill(rows,
      ...page.jobs.map((job) =>
        el(
          "tr",
          { "data-job": job.job_id },
          el("td", {}, el("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}` }, job.job_id)),
          el("td", {}, stateOf(job.state)),
          el("td", {}, job.task_type),
          el("td", {}, job.via || ""),
          el("td", {}, when(job.submitted_at)),
          el("td", {}, took(job)),
        ),
      ),
    );
    if (!page.jobs.length) rows.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No jobs.")));
  });
}
