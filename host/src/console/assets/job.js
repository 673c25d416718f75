// One job's page: state, timeline and usage, the live log, the result,
// files, receipt and job document, and Cancel.

import { api, download, follow, getJson } from "./api.js";
import { el, facts, fill, pretty, stateOf, took, when } from "./dom.js";
import { failed, onLeave, show, status } from "./view.js";

const TERMINAL = new Set(["finished", "failed", "cancelled"]);

function base64Json(text) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

function usage(metrics) {
  const ms = (value) => (value === null || value === undefined ? null : `${Number(value).toFixed(1)} ms`);
  return facts([
    ["Wall time", ms(metrics.wall_time_ms)],
    ["CPU time", ms(metrics.cpu_time_ms)],
    ["Peak memory", metrics.peak_memory_bytes === null || metrics.peak_memory_bytes === undefined ? null : `${(metrics.peak_memory_bytes / 1048576).toFixed(1)} MiB`],
    ["Fuel", metrics.fuel_consumed],
    ["Tokens", metrics.tokens],
    ["Ran", metrics.ran],
    ["Code cache", metrics.code_cache],
  ]);
}

export function jobView(id) {
  const path = `/jobs/${encodeURIComponent(id)}`;
  const summary = el("section", { class: "card", id: "job-summary" }, el("p", { class: "muted" }, "Loading…"));
  const log = el("pre", { id: "job-log" }, el("span", { class: "muted", id: "no-output" }, "No output yet."));
  const result = el("section", { class: "card", id: "job-result" });
  const files = el("section", { class: "card", id: "job-files" });
  const receipt = el("section", { class: "card", id: "job-receipt" });
  const spec = el("pre", { id: "job-spec" });
  show(
    el("h1", {}, "Job ", el("code", {}, id)),
    summary,
    el("section", { class: "card" }, el("h2", {}, "Log"), log),
    result,
    files,
    receipt,
    el("section", { class: "card" }, el("h2", {}, "Job document"), spec),
  );
  const streams = new AbortController();
  onLeave(() => streams.abort());
  let ended = false;

  const refresh = async () => {
    const job = await getJson(path);
    const cancel = TERMINAL.has(job.state)
      ? null
      : el("button", { type: "button", id: "cancel", class: "danger" }, "Cancel");
    cancel?.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        const answer = await (await api(path, { method: "DELETE" })).json();
        status(answer.note || `Job ${answer.state}.`);
        await refresh();
      } catch (error) {
        failed(error);
        cancel.disabled = false;
      }
    });
    const timeline = [
      ["submitted", job.submitted_at],
      ["started", job.started_at],
      [job.finished_at ? job.state : null, job.finished_at],
    ].filter(([name, at]) => name && at);
    fill(summary,
      el("div", { class: "row" }, el("span", { id: "job-state" }, stateOf(job.state)), cancel),
      facts([
        ["Type", job.task_type],
        ["Mode", job.mode],
        ["Origin", job.via],
        ["Priority", job.priority],
        ["Attempts", job.attempts],
        ["Took", took(job)],
        ["Executor", job.executor],
        ["Error", job.error ? `${job.error.code}: ${job.error.message}` : null],
      ]),
      job.metrics ? [el("h2", {}, "Usage"), usage(job.metrics)] : null,
      el("h2", {}, "Timeline"),
      el("ol", { class: "timeline" }, timeline.map(([name, at]) => el("li", {}, `${name} ${when(at)}`))),
    );
    if (TERMINAL.has(job.state) && !ended) {
      ended = true;
      const empty = document.getElementById("no-output");
      if (empty) empty.textContent = "The job printed nothing.";
      await Promise.all([showResult(job), showFiles(), showReceipt()]);
    }
    return job;
  };

  const showResult = async (job) => {
    fill(result, el("h2", {}, "Result"));
    if (job.state !== "finished") {
      result.append(el("p", { class: "error" }, job.error ? `${job.error.code}: ${job.error.message}` : job.state));
      return;
    }
    const output = await (await api(`${path}/result`)).text();
    let shown = output;
    try {
      shown = pretty(JSON.parse(output));
    } catch (_) {
      // Not JSON after all: shown as it came.
    }
    result.append(el("pre", { id: "result-output" }, shown));
  };

  const showFiles = async () => {
    const listing = await getJson(`${path}/files`).catch((e) => (failed(e), { files: [] }));
    fill(files, el("h2", {}, "Files"));
    if (!listing.files.length) {
      files.append(el("p", { class: "muted" }, "The job kept no files."));
      return;
    }
    files.append(
      el(
        "table",
        {},
        listing.files.map((file) =>
          el(
            "tr",
            {},
            el("td", {}, file.path),
            el("td", {}, `${file.size} bytes`),
            el(
              "td",
              {},
              el(
                "button",
                {
                  type: "button",
                  class: "link",
                  onclick: () => download(`${path}/files/${file.path.split("/").map(encodeURIComponent).join("/")}`, file.path.split("/").pop()).catch(failed),
                },
                "Download",
              ),
            ),
          ),
        ),
      ),
    );
  };

  const showReceipt = async () => {
    fill(receipt, el("h2", {}, "Receipt"));
    let envelope;
    try {
      envelope = await getJson(`${path}/receipt`);
    } catch (error) {
      receipt.append(el("p", { class: "muted" }, error.code === "NO_RECEIPT" ? "No receipt: the node signs none, or the job never ran." : error.message));
      return;
    }
    const statement = base64Json(envelope.payload);
    const predicate = statement.predicate || {};
    receipt.append(
      facts([
        ["Signed by", envelope.signatures?.[0]?.keyid],
        ["Ran", predicate.ran ? `${predicate.ran.executor} ${predicate.ran.digest || ""}` : null],
        ["Outcome", predicate.outcome ? predicate.outcome.state : null],
        ["Subjects", (statement.subject || []).map((s) => `${s.name} sha256:${s.digest?.sha256 || "none"}`).join("\n")],
      ]),
      el("p", { class: "muted" }, "Check it with ", el("code", {}, "wasmnode receipt verify"), "."),
      el(
        "button",
        { type: "button", id: "download-receipt", onclick: () => download(`${path}/receipt`, `${id}.receipt.json`).catch(failed) },
        "Download receipt",
      ),
    );
  };

  getJson(`${path}/request`)
    .then((request) => fill(spec, pretty(request)))
    .catch((error) => fill(spec, error.message));

  const append = (text, stream) => {
    document.getElementById("no-output")?.remove();
    log.append(stream === "stderr" ? el("span", { class: "stderr" }, text) : text);
    log.scrollTop = log.scrollHeight;
  };
  (async () => {
    try {
      await refresh();
      await follow(`${path}/events`, streams.signal, (name, data) => {
        const event = JSON.parse(data);
        if (name === "stdout" || name === "stderr" || name === "token") append(event.data, name);
        else if (name === "truncated") append("[earlier output was dropped]\n", "stderr");
        else if (name === "state") refresh().catch(failed);
        else if (name === "end") refresh().catch(failed);
      });
    } catch (error) {
      failed(error);
    }
  })();
}
