// The Submit page: a form per task type (inputs from `/task-types`), and
// for tools the tool's own arguments (from its schema in `/tools`).

import { api, getJson } from "./api.js";
import { el, fill } from "./dom.js";
import { show, shown } from "./view.js";

/** A form control for one value: `kind` is an input kind of `/task-types`. */
function control(id, kind, { required, placeholder, options } = {}) {
  if (kind === "long_text" || kind === "json") {
    return el("textarea", { id, rows: kind === "json" ? 5 : 4, required, placeholder });
  }
  if (kind === "boolean" || kind === "choice") {
    const choices = kind === "boolean" ? ["true", "false"] : options;
    return el("select", { id }, el("option", { value: "" }, placeholder || "default"), choices.map((o) => el("option", { value: o }, o)));
  }
  const type = kind === "integer" || kind === "number" ? "number" : "text";
  return el("input", { id, type, step: kind === "number" ? "any" : null, required, placeholder });
}

/** The kind of form control a JSON Schema property gets. */
function schemaKind(schema) {
  if (Array.isArray(schema.enum)) return "choice";
  switch (schema.type) {
    case "integer":
    case "number":
    case "boolean":
      return schema.type;
    case "string":
      return "text";
    default:
      return "json";
  }
}

/** The value of a control as the payload takes it, or undefined when empty. */
function valueOf(field, kind) {
  const raw = field.value;
  if (raw === "") return undefined;
  if (kind === "integer" || kind === "number") return Number(raw);
  if (kind === "boolean") return raw === "true";
  return raw;
}

function labelled(id, name, about, required, field) {
  return el(
    "div",
    { class: "field" },
    el("label", { for: id }, name, required ? " *" : "", about ? el("span", { class: "muted" }, ` — ${about}`) : null),
    field,
  );
}

export async function submitView() {
  const view = shown;
  const [catalog, tools] = await Promise.all([getJson("/task-types"), getJson("/tools")]);
  if (view !== shown) return;
  const types = catalog.task_types;
  const typeField = el("select", { id: "submit-type" }, types.map((t) => el("option", { value: t.name }, t.name)));
  const fields = el("div", { id: "submit-fields" });
  const error = el("p", { id: "submit-error", class: "error", role: "alert" });
  const jobId = el("input", { id: "submit-job-id", type: "text", placeholder: "made up when empty" });
  const timeout = el("input", { id: "submit-timeout", type: "number", min: 1, placeholder: "the node's default" });
  let read = () => ({});

  const toolFields = (name, box) => {
    const tool = tools.tools.find((t) => t.name === name);
    const schema = (tool && tool.args_schema) || {};
    const properties = schema.properties || {};
    const needed = new Set(schema.required || []);
    const args = Object.entries(properties).map(([arg, property]) => {
      const kind = schemaKind(property);
      const id = `arg-${arg}`;
      const placeholder = property.default === undefined ? null : `default: ${JSON.stringify(property.default)}`;
      const field = control(id, kind, { required: needed.has(arg), placeholder, options: property.enum });
      return { arg, kind, field, node: labelled(id, arg, property.description, needed.has(arg), field) };
    });
    fill(
      box,
      tool ? el("p", { class: "muted" }, tool.description) : null,
      tool && tool.args_schema === null
        ? labelled("arg-json", "args", "the image's arguments, as JSON", false, control("arg-json", "json"))
        : args.map((a) => a.node),
    );
    return () => {
      if (tool && tool.args_schema === null) {
        const text = document.getElementById("arg-json").value.trim();
        return text ? JSON.parse(text) : {};
      }
      const out = {};
      for (const { arg, kind, field } of args) {
        const value = valueOf(field, kind === "choice" ? "text" : kind);
        if (value === undefined) continue;
        out[arg] = kind === "json" ? JSON.parse(value) : value;
      }
      return out;
    };
  };

  const showFields = () => {
    const type = types.find((t) => t.name === typeField.value);
    const inputs = type.inputs.map((input) => {
      const id = `input-${input.name}`;
      const kind = input.kind === "tool" ? "tool" : input.kind;
      const field =
        kind === "tool"
          ? el("select", { id, required: true }, tools.tools.map((t) => el("option", { value: t.name }, t.name)))
          : control(id, kind, { required: input.required, options: input.options });
      return { input, kind, field, node: labelled(id, input.name, input.about, input.required, field) };
    });
    const argsBox = el("div", { id: "submit-args" });
    fill(fields, ...inputs.map((i) => i.node), argsBox);
    let readArgs = () => undefined;
    const tool = inputs.find((i) => i.kind === "tool");
    if (tool) {
      const pick = () => (readArgs = toolFields(tool.field.value, argsBox));
      tool.field.addEventListener("change", pick);
      pick();
    }
    read = () => {
      const payload = {};
      for (const { input, kind, field } of inputs) {
        const value = valueOf(field, kind === "choice" || kind === "tool" ? "text" : kind);
        if (value === undefined) continue;
        if (kind === "json") JSON.parse(value); // refused here rather than by the node
        payload[input.name] = value;
      }
      const args = readArgs();
      if (args !== undefined) payload.args = args;
      return payload;
    };
  };
  typeField.addEventListener("change", showFields);
  showFields();

  const form = el(
    "form",
    { id: "submit-form", class: "card" },
    labelled("submit-type", "Task type", null, true, typeField),
    fields,
    el("h2", {}, "Job"),
    labelled("submit-job-id", "Job id", "unique on this node", false, jobId),
    labelled("submit-timeout", "Time limit (s)", null, false, timeout),
    error,
    el("button", { type: "submit" }, "Submit"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    let payload;
    try {
      payload = read();
    } catch (e) {
      error.textContent = `Not valid JSON: ${e.message}`;
      return;
    }
    const id = jobId.value.trim() || `console-${Date.now().toString(36)}`;
    const job = {
      protocol_version: 1,
      job_id: id,
      task: { type: typeField.value, payload },
      runtime: { mode: "auto" },
    };
    if (timeout.value) job.runtime.limits = { max_runtime_seconds: Number(timeout.value) };
    try {
      await api("/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(job) });
    } catch (e) {
      error.textContent = `${e.code}: ${e.message}`;
      return;
    }
    location.hash = `#/jobs/${encodeURIComponent(id)}`;
  });
  show(el("h1", {}, "Submit a job"), form);
}
