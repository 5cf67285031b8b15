/* The taskrun console: runs, tasks and schedules, on the public API with the key the person
   types once (kept in this browser session's storage, sent as X-API-KEY, never in a URL).
   Pages are hash routes (#/runs, #/runs/ID, #/tasks, #/tasks/ID, #/schedules); forms for
   starting a task are JSON Editor's, made from the task's JSON Schema. */
"use strict";

const KEY = "taskrun-key";
const ACTIVE = ["queued", "pending", "running"];
const STATUSES = ["queued", "pending", "running", "succeeded", "failed", "timed_out", "cancelled"];
const TRIGGERS = ["api", "schedule", "step_functions"];
const REFRESH_MS = 3000;
const FOLLOW_MS = 1000;
const PAGE_SIZE = 25; // runs a page of the list shows
let timers = [];
let editor = null;

/* ---------------------------------------------------------------- the API */

class Problem extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.errors = (body && body.errors) || [];
  }
}

async function api(method, path, body) {
  const headers = { "X-API-KEY": sessionStorage.getItem(KEY) || "" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path.replace(/^\//, ""), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await answer.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = { detail: text.slice(0, 300) };
  }
  if (answer.status === 401 && !document.getElementById("key-form")) {
    sessionStorage.removeItem(KEY); // the key was revoked meanwhile: ask for one again
    route();
  }
  if (!answer.ok) throw new Problem(answer.status, data);
  return data;
}

function query(params) {
  const kept = Object.entries(params).filter(([, value]) => value !== "" && value !== null && value !== undefined);
  return kept.length ? "?" + new URLSearchParams(kept).toString() : "";
}

/* ---------------------------------------------------------------- building pages */

function h(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/* Put these children in `node` in place of its own; a missing one (null, undefined, false) is
   left out, as h() leaves it out (replaceChildren would write it as the text "null"). */
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
}

function show(...nodes) {
  fill(document.getElementById("main"), ...nodes);
}

function status(value) {
  return h("span", { class: `status status-${value}`, "data-status": value }, value.replace("_", " "));
}

function when(value) {
  return value ? new Date(value).toLocaleString() : "—";
}

function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

function problemBox(error, id) {
  return h("p", { class: "problem", role: "alert", id: id || null }, error.message || String(error));
}

/* A button that does `action`, its problem (if any) shown in `note`. */
function button(label, id, action, kind, note) {
  return h(
    "button",
    {
      id,
      class: kind || "",
      onclick: async () => {
        try {
          await action();
          fill(note);
        } catch (error) {
          fill(note, problemBox(error));
        }
      },
    },
    label
  );
}

function every(ms, action) {
  const timer = setInterval(action, ms);
  timers.push(timer);
}

function progressBar(progress) {
  if (!progress) return null;
  const words = [
    progress.total ? `${progress.done} of ${progress.total}` : `${progress.done}`,
    progress.message || "",
  ].join(" ");
  return h(
    "div",
    { class: "progress" },
    progress.total ? h("progress", { value: progress.done, max: progress.total }) : h("progress", {}),
    h("small", { class: "progress-words" }, words.trim())
  );
}

/* ---------------------------------------------------------------- key */

function keyPage() {
  document.getElementById("nav").hidden = true;
  const input = h("input", {
    type: "password",
    id: "key",
    name: "key",
    placeholder: "API key",
    autocomplete: "off",
    required: true,
  });
  const note = h("p", { id: "key-problem" });
  const form = h(
    "form",
    {
      id: "key-form",
      onsubmit: async (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY, input.value.trim());
        try {
          await api("GET", "v1/runs?limit=1");
          if (!location.hash || location.hash === "#/") location.hash = "#/runs";
          else route();
        } catch (error) {
          sessionStorage.removeItem(KEY);
          fill(note, problemBox(error));
        }
      },
    },
    h("label", { for: "key" }, "Your API key (kept for this browser session only)"),
    input,
    h("button", { type: "submit", id: "use-key" }, "Use this key"),
    note
  );
  show(h("article", { class: "key" }, h("h2", {}, "taskrun console"), form));
  input.focus();
}

/* ---------------------------------------------------------------- runs */

async function runsPage(params) {
  const filters = {
    task_id: params.get("task_id") || "",
    status: params.get("status") || "",
    triggered_by: params.get("triggered_by") || "",
    schedule_id: params.get("schedule_id") || "",
    tag: params.get("tag") || "",
  };
  const field = (name, label) =>
    h("input", { name, id: `filter-${name}`, placeholder: label, value: filters[name], "aria-label": label });
  const choice = (name, label, values) =>
    h(
      "select",
      { name, id: `filter-${name}`, "aria-label": label },
      h("option", { value: "" }, label),
      values.map((value) => h("option", { value, selected: filters[name] === value }, value))
    );
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: (event) => {
        event.preventDefault();
        const data = Object.fromEntries(new FormData(form).entries());
        location.hash = "#/runs" + query(data);
      },
    },
    h(
      "fieldset",
      {},
      field("task_id", "task"),
      choice("status", "any status", STATUSES),
      choice("triggered_by", "any trigger", TRIGGERS),
      field("schedule_id", "schedule"),
      field("tag", "tag"),
      h("button", { type: "submit" }, "Filter")
    )
  );
  const body = h("tbody", { id: "runs" });
  const more = h("button", { class: "secondary", id: "more", hidden: true }, "More");
  const note = h("p", { id: "runs-problem" });
  const live = h("small", { id: "runs-live", class: "live", "aria-live": "polite" });
  let cursor = null;
  const row = (run) =>
    h(
      "tr",
      { "data-run": run.run_id },
      h("td", {}, h("a", { href: `#/runs/${run.run_id}` }, run.run_id)),
      h("td", {}, run.task_id),
      h("td", { class: "run-status" }, status(run.status), progressBar(ACTIVE.includes(run.status) ? run.progress : null)),
      h("td", {}, when(run.created_at)),
      h("td", {}, run.duration_ms === null || run.duration_ms === undefined ? "" : `${run.duration_ms} ms`),
      h("td", {}, (run.tags || []).join(", "))
    );
  async function load(append) {
    try {
      const page = await api("GET", "v1/runs" + query({ ...filters, limit: PAGE_SIZE, cursor: append ? cursor : "" }));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      const rows = page.runs.map(row);
      if (append) body.append(...rows);
      else fill(body, ...rows);
      fill(note);
      const active = page.runs.filter((run) => ACTIVE.includes(run.status)).length;
      live.textContent = active ? `${active} active: this list refreshes itself every ${REFRESH_MS / 1000} s` : "";
      return page.runs;
    } catch (error) {
      fill(note, problemBox(error));
      return [];
    }
  }
  more.addEventListener("click", () => load(true));
  show(
    h("div", { class: "title-row" }, h("h2", {}, "Runs"), live),
    form,
    note,
    h(
      "table",
      { class: "striped compact" },
      h(
        "thead",
        {},
        h("tr", {}, ["run", "task", "status", "created", "took", "tags"].map((name) => h("th", {}, name)))
      ),
      body
    ),
    more
  );
  await load(false);
  every(REFRESH_MS, async () => {
    // the first page refreshes by itself (new runs appear, active ones move on); once more
    // pages are shown, it stays as it is until the person filters or comes back
    if (body.children.length <= PAGE_SIZE) await load(false);
  });
}

async function runPage(runId) {
  let run;
  try {
    run = await api("GET", `v1/runs/${encodeURIComponent(runId)}`);
  } catch (error) {
    show(h("h2", {}, "Run"), problemBox(error));
    return;
  }
  const head = h("div", { id: "run-head" });
  const details = h("div", { id: "run-details" });
  const logs = h("pre", { id: "logs", class: "logs", "aria-busy": "true" });
  const steps = h("div", { id: "steps" }, run.task_type === "flow" ? h("p", { "aria-busy": "true" }, "Loading the steps…") : null);
  const deliveries = h("div", { id: "deliveries" });
  const callbacks = h("div", { id: "callbacks" });
  const note = h("p", { id: "run-problem" });
  show(
    h("p", {}, h("a", { href: "#/runs" }, "← runs")),
    head,
    note,
    callbacks,
    run.task_type === "flow" ? h("h3", {}, "Steps") : null,
    steps,
    h("h3", {}, "Logs"),
    logs,
    details,
    deliveries
  );

  const act = (label, id, action, kind) => button(label, id, action, kind, note);

  function drawHead() {
    fill(head,
      h("h2", {}, run.task_id, " ", status(run.status)),
      h("p", {}, h("code", {}, run.run_id)),
      progressBar(run.progress),
      h(
        "div",
        { class: "actions" },
        ACTIVE.includes(run.status)
          ? act("Cancel", "cancel", async () => {
              run = await api("POST", `v1/runs/${run.run_id}/cancel`);
              draw();
            }, "secondary")
          : null,
        act("Re-run", "rerun", async () => {
          const again = await api("POST", `v1/runs/${run.run_id}/rerun`, {});
          location.hash = `#/runs/${again.run_id}`;
        })
      )
    );
  }

  function drawDetails() {
    const rows = [
      ["status", status(run.status)],
      ["triggered by", run.triggered_by + (run.schedule_id ? ` (${run.schedule_id})` : "")],
      ["created", when(run.created_at)],
      ["started", when(run.started_at)],
      ["ended", when(run.ended_at)],
      ["duration", run.duration_ms === null ? "—" : `${run.duration_ms} ms`],
      ["attempt", String(run.attempt)],
      ["tags", (run.tags || []).join(", ") || "—"],
      ["re-run of", run.rerun_of ? h("a", { href: `#/runs/${run.rerun_of}` }, run.rerun_of) : "—"],
    ];
    const parts = [
      h("table", {}, h("tbody", {}, rows.map(([name, value]) => h("tr", {}, h("th", {}, name), h("td", {}, value))))),
      h("h3", {}, "Arguments"),
      json(run.arguments),
    ];
    if (run.status === "succeeded") {
      parts.push(h("h3", {}, "Result"));
      parts.push(
        run.result_url
          ? h("p", {}, h("a", { href: run.result_url, id: "result-link" }, "The result (a link, valid for a while)"))
          : h("div", { id: "result" }, json(run.result))
      );
    }
    if (run.error) {
      const frames = (run.error.frames || []).map((frame) =>
        h(
          "li",
          {},
          h("code", {}, `${frame.file}:${frame.line}`),
          ` in ${frame.function}`,
          frame.code ? h("pre", {}, frame.code) : null
        )
      );
      parts.push(
        h(
          "article",
          { class: "error", id: "error" },
          h("h3", {}, "Error"),
          h("p", {}, h("strong", {}, run.error.exception_type || run.error.type), ": ", run.error.message),
          frames.length ? h("ol", { class: "traceback" }, frames) : null
        )
      );
    }
    fill(details, ...parts);
  }

  function draw() {
    drawHead();
    drawDetails();
  }

  let stepsSeen = [];
  let openStep = null; // the step whose output or error is shown: its name and start
  async function drawSteps() {
    if (run.task_type !== "flow") return;
    try {
      const page = await api("GET", `v1/runs/${run.run_id}/history?limit=500`);
      stepsSeen = page.steps;
      drawTimeline();
    } catch (error) {
      fill(steps, problemBox(error));
    }
  }

  function drawTimeline() {
    // a redraw keeps the step a person (or a keyboard) is on focused
    const focused = steps.contains(document.activeElement) ? document.activeElement.closest("[data-key]") : null;
    fill(steps, timeline(stepsSeen, run, openStep, (key) => {
      openStep = openStep === key ? null : key;
      drawTimeline();
      refocus(key);
    }));
    if (focused) refocus(focused.dataset.key);
  }

  function refocus(key) {
    const button = steps.querySelector(`[data-key="${CSS.escape(key)}"] button`);
    if (button) button.focus();
  }

  async function drawDeliveries() {
    if (!run.webhook_url) return;
    try {
      const page = await api("GET", `v1/runs/${run.run_id}/deliveries`);
      fill(deliveries,
        h("h3", {}, "Webhook deliveries"),
        h(
          "table",
          {},
          h("tbody", {}, page.deliveries.map((delivery) =>
            h(
              "tr",
              { "data-delivery": delivery.delivery_id },
              h("td", {}, delivery.event_type),
              h("td", {}, status(delivery.status)),
              h("td", {}, `${delivery.attempts.length} attempt(s)`),
              h(
                "td",
                {},
                act("Retry", `retry-${delivery.delivery_id}`, async () => {
                  await api("POST", `v1/runs/${run.run_id}/deliveries/${delivery.delivery_id}/retry`);
                  setTimeout(drawDeliveries, 500);
                }, "secondary outline")
              )
            )
          ))
        )
      );
    } catch (error) {
      fill(deliveries, problemBox(error));
    }
  }

  async function drawCallbacks() {
    if (run.task_type !== "flow") return;
    try {
      const page = await api("GET", `v1/runs/${run.run_id}/callbacks`);
      const waiting = page.callbacks.filter((callback) => callback.status === "waiting");
      fill(callbacks,
        ...waiting.map((callback) =>
          h(
            "article",
            { class: "callback", "data-callback": callback.callback_id },
            h("h3", {}, `Waiting for a decision: ${callback.step}`),
            callback.request === null || callback.request === undefined ? null : json(callback.request),
            h(
              "div",
              { class: "actions" },
              act("Approve", `approve-${callback.callback_id}`, async () => {
                await api("POST", `v1/runs/${run.run_id}/callbacks/${callback.callback_id}`, {
                  output: { approved: true, by: "console" },
                });
                fill(callbacks, h("p", { id: "decided" }, "Approved."));
              }),
              act("Reject", `reject-${callback.callback_id}`, async () => {
                await api("POST", `v1/runs/${run.run_id}/callbacks/${callback.callback_id}`, {
                  error: "Rejected",
                  cause: "rejected in the console",
                });
                fill(callbacks, h("p", { id: "decided" }, "Rejected."));
              }, "secondary")
            )
          )
        )
      );
    } catch (error) {
      fill(callbacks, problemBox(error));
    }
  }

  // logs: the whole of them, then only what is new, until the run has ended
  let cursor = null;
  let following = true;
  async function follow() {
    if (!following) return;
    try {
      const answer = await api("GET", `v1/runs/${run.run_id}/logs` + query({ cursor }));
      // the newest line stays in view, unless the person scrolled up to read
      const atEnd = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 8;
      logs.removeAttribute("aria-busy");
      if (answer.text) logs.append(answer.text);
      if (answer.text && atEnd) logs.scrollTop = logs.scrollHeight;
      cursor = answer.cursor;
      if (answer.ended) {
        following = false;
        logs.dataset.ended = "true";
        if (!logs.textContent) logs.textContent = "(nothing printed)";
      }
    } catch (error) {
      fill(note, problemBox(error));
    }
  }

  draw();
  await Promise.all([follow(), drawSteps(), drawDeliveries(), drawCallbacks()]);
  every(FOLLOW_MS, follow);
  every(REFRESH_MS, async () => {
    if (!ACTIVE.includes(run.status) && !run.webhook_url) return;
    const before = run.status;
    try {
      run = await api("GET", `v1/runs/${run.run_id}`);
    } catch (_) {
      return;
    }
    if (ACTIVE.includes(before) || run.status !== before) draw();
    // steps and callbacks change while the run is active (and once more as it ends); deliveries after it too
    const moving = ACTIVE.includes(before) || ACTIVE.includes(run.status);
    await Promise.all([moving ? drawSteps() : null, drawDeliveries(), moving ? drawCallbacks() : null]);
  });
}

/* ---------------------------------------------------------------- a flow's timeline */

const WAITS = ["Wait", "wait", "callback", "wait_for_callback", "wait_for_condition"];

function seconds(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
}

/* A flow's steps (both kinds: a state machine's states, a code-first flow's steps) on one time
   axis from the run's start: a bar a step from its start to its end (to now while it runs),
   coloured by its status, a wait hatched, its attempts said when it was tried again. Each
   step's name is a button that shows its output or error below it. */
function timeline(steps, run, openStep, toggle) {
  if (!steps.length) return h("p", { class: "timeline-empty" }, ACTIVE.includes(run.status) ? "No step yet." : "No steps.");
  const time = (value) => Date.parse(value);
  const starts = steps.map((step) => time(step.started_at));
  const origin = Math.min(...starts, run.started_at ? time(run.started_at) : Infinity);
  const now = Math.max(Date.now(), ...starts);
  // a step with no end ends with the run, if the run has ended (cancelled while it waited); else it goes on now
  const endOf = (step) => (step.ended_at ? time(step.ended_at) : run.ended_at ? time(run.ended_at) : now);
  const last = Math.max(...steps.map(endOf), run.ended_at ? time(run.ended_at) : 0);
  const span = Math.max(last - origin, 1);
  const at = (moment) => Math.min(100, Math.max(0, ((moment - origin) / span) * 100));
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((part) => h("span", {}, seconds(span * part)));
  return h(
    "div",
    { class: "timeline" },
    h("div", { class: "gantt-axis", "aria-hidden": "true", "data-span-ms": Math.round(span) }, ticks),
    h("div", { role: "list", "aria-label": "the flow's steps, in the order they started" }, steps.map((step, index) => {
      const key = `${step.name}@${step.started_at}`;
      const opened = openStep === key;
      const left = at(time(step.started_at));
      const width = Math.max(at(endOf(step)) - left, 0.4);
      const took = endOf(step) - time(step.started_at);
      const waits = WAITS.includes(step.type);
      return h(
        "div",
        { class: "gantt-row", role: "listitem", "data-step": step.name, "data-key": key, "data-status": step.status },
        h(
          "button",
          {
            type: "button",
            class: "gantt-label",
            "aria-expanded": opened ? "true" : "false",
            "aria-controls": `step-detail-${index}`,
            onclick: () => toggle(key),
          },
          h("span", { class: "step-name" }, step.name),
          h(
            "small",
            {},
            `${step.type} · ${step.status.replace("_", " ")} · ${seconds(took)}`,
            step.attempts > 1 ? h("span", { class: "attempts" }, ` · ${step.attempts} attempts`) : null
          )
        ),
        h(
          "div",
          { class: "gantt-track", "aria-hidden": "true" },
          h("div", {
            class: `gantt-bar bar-${step.status}${waits ? " bar-wait" : ""}`,
            style: `left: ${left.toFixed(2)}%; width: ${width.toFixed(2)}%`,
            "data-left": left.toFixed(2),
            "data-width": width.toFixed(2),
          })
        ),
        opened
          ? h(
              "div",
              { class: "step-detail", id: `step-detail-${index}` },
              h("small", {}, `${when(step.started_at)} → ${step.ended_at ? when(step.ended_at) : "still going"}`),
              step.error
                ? h("p", { class: "problem step-error" }, `${step.error}${step.cause ? `: ${step.cause}` : ""}`)
                : null,
              step.output !== null && step.output !== undefined ? h("div", { class: "step-output" }, json(step.output)) : null,
              !step.error && (step.output === null || step.output === undefined)
                ? h("p", {}, step.ended_at ? "No output." : "No output yet.")
                : null
            )
          : null
      );
    }))
  );
}

/* ---------------------------------------------------------------- tasks */

async function tasksPage() {
  try {
    const page = await api("GET", "v1/tasks");
    const unloaded = page.unloaded_modules || [];
    show(
      h("h2", {}, "Tasks"),
      unloaded.length
        ? h(
            "article",
            { id: "unloaded-modules", class: "problem", role: "alert" },
            h("p", {}, "These task modules do not import, so their tasks are not listed and cannot run:"),
            h(
              "ul",
              {},
              unloaded.map((problem) =>
                h("li", { "data-module": problem.module }, h("code", {}, place(problem)), `: ${problem.error}`)
              )
            )
          )
        : null,
      h(
        "table",
        { class: "striped" },
        h("thead", {}, h("tr", {}, ["task", "type", "description", "timeout"].map((name) => h("th", {}, name)))),
        h(
          "tbody",
          { id: "tasks" },
          page.tasks.map((task) =>
            h(
              "tr",
              { "data-task": task.task_id },
              h("td", {}, h("a", { href: `#/tasks/${task.task_id}` }, task.task_id)),
              h("td", {}, task.task_type),
              h(
                "td",
                {},
                task.problem
                  ? h("p", { class: "problem", "data-problem": "" }, `Its module does not import: ${task.problem}`)
                  : null,
                task.description || ""
              ),
              h("td", {}, task.timeout ? `${task.timeout} s` : "")
            )
          )
        )
      )
    );
  } catch (error) {
    show(h("h2", {}, "Tasks"), problemBox(error));
  }
}

/* Where a module's problem is: `mytasks/needsdep.py line 1`. */
function place(problem) {
  return problem.line ? `${problem.file} line ${problem.line}` : problem.file;
}

/* A JSON Schema for JSON Editor: `$ref`s to `$defs` put in place (it reads `definitions`),
   each taskrun file parameter turned into a text field for its file id with an upload button,
   and an Optional parameter's choice of no value named "none" (its switcher would say "null"). */
function formSchema(schema) {
  const defs = schema.$defs || {};
  const seen = new Set();
  function resolve(node) {
    if (Array.isArray(node)) return node.map(resolve);
    if (!node || typeof node !== "object") return node;
    if (typeof node.$ref === "string" && node.$ref.startsWith("#/$defs/")) {
      const name = node.$ref.slice("#/$defs/".length);
      if (seen.has(name)) return { type: "object" }; // a schema that refers to itself stops here
      seen.add(name);
      const { $ref, ...rest } = node;
      const resolved = resolve({ ...defs[name], ...rest });
      seen.delete(name);
      return resolved;
    }
    if (node["x-taskrun-file"]) {
      return {
        type: "string",
        title: node.title || "File",
        format: "url",
        options: { upload: { upload_handler: "taskrunFile", auto_upload: true }, "x-taskrun-file": true },
      };
    }
    const out = {};
    for (const [key, value] of Object.entries(node)) if (key !== "$defs") out[key] = resolve(value);
    if (out.type === "null" && !out.title) out.title = "none"; // the choice of no value (Optional), not "null"
    return out;
  }
  const resolved = resolve(schema);
  if (!resolved.type) resolved.type = "object";
  resolved.title = " "; // the task's name heads the page already
  return resolved;
}

function fileFields(schema) {
  return Object.entries(schema.properties || {})
    .filter(([, value]) => value.options && value.options["x-taskrun-file"])
    .map(([name]) => name);
}

async function upload(file) {
  const made = await api("POST", "v1/files", {
    filename: file.name,
    content_type: file.type || "application/octet-stream",
    size: file.size,
  });
  const sent = await fetch(made.upload_url, { method: "PUT", headers: made.upload_headers || {}, body: file });
  if (!sent.ok) throw new Error(`the upload failed (${sent.status})`);
  return made.file_id;
}

async function taskPage(taskId) {
  let task;
  try {
    task = await api("GET", `v1/tasks/${taskId}`);
  } catch (error) {
    show(h("h2", {}, taskId), problemBox(error));
    return;
  }
  const holder = h("div", { id: "task-form" });
  const note = h("div", { id: "start-problem" });
  const start = h("button", { id: "start", type: "button" }, "Start a run");
  show(
    h("p", {}, h("a", { href: "#/tasks" }, "← tasks")),
    h("h2", {}, task.task_id),
    task.problem
      ? h("p", { class: "problem", role: "alert" }, `Its module does not import, so it cannot run: ${task.problem}`)
      : null,
    h("p", {}, task.description || ""),
    holder,
    note,
    start
  );
  const schema = formSchema(task.parameters || { type: "object" });
  const files = fileFields(schema);
  window.JSONEditor.defaults.callbacks.upload = {
    taskrunFile: (_editor, _type, file, callbacks) => {
      upload(file).then(callbacks.success, (error) => callbacks.failure(error.message));
    },
  };
  if (editor) editor.destroy();
  editor = new window.JSONEditor(holder, {
    schema,
    theme: "html",
    iconlib: null,
    disable_collapse: true,
    disable_edit_json: true,
    disable_properties: true,
    show_errors: "interaction",
    no_additional_properties: true,
    required_by_default: false,
    display_required_only: false,
    use_default_values: true,
    prompt_before_delete: false,
  });
  start.addEventListener("click", async () => {
    const arguments_ = { ...editor.getValue() };
    for (const name of files) if (arguments_[name]) arguments_[name] = { file_id: arguments_[name] };
    fill(note);
    editor.root.showValidationErrors([]);
    try {
      const run = await api("POST", "v1/runs", { task_id: task.task_id, arguments: arguments_ });
      location.hash = `#/runs/${run.run_id}`;
    } catch (error) {
      // each problem beside the field it names (body.arguments.x.y → root.x.y), the rest above the button
      const beside = [];
      const rest = [];
      for (const item of error.errors || []) {
        const path = (item.location || "").split(".");
        if (path[0] === "body" && path[1] === "arguments" && path.length > 2) {
          beside.push({ path: ["root", ...path.slice(2)].join("."), property: "problem", message: item.message });
        } else rest.push(item);
      }
      for (const item of beside) {
        const field = editor.getEditor(item.path);
        if (field) field.is_dirty = true; // shown even where the person typed nothing
      }
      editor.root.showValidationErrors(beside);
      fill(note, problemBox(error, "start-detail"));
      if (rest.length) note.append(h("ul", {}, rest.map((item) => h("li", {}, `${item.location}: ${item.message}`))));
    }
  });
}

/* ---------------------------------------------------------------- schedules */

async function schedulesPage() {
  const note = h("p", { id: "schedules-problem" });
  const body = h("tbody", { id: "schedules" });
  async function load() {
    try {
      const page = await api("GET", "v1/schedules?limit=100");
      fill(body, ...page.schedules.map(row));
    } catch (error) {
      fill(note, problemBox(error));
    }
  }
  const act = (label, id, action, kind) => button(label, id, action, kind, note);
  function row(schedule) {
    const id = schedule.schedule_id;
    const last = schedule.last_run;
    return h(
      "tr",
      { "data-schedule": id },
      h("td", {}, id),
      h("td", {}, schedule.task_id),
      h("td", {}, h("code", {}, schedule.expression)),
      h("td", { class: "state" }, schedule.state), // the API's word: scheduled, running, done, error, disabled
      h("td", {}, when(schedule.next_run_at)),
      h("td", {}, last ? h("a", { href: `#/runs/${last.run_id}` }, last.status) : "—"),
      h(
        "td",
        {},
        h(
          "div",
          { role: "group" },
          schedule.enabled
            ? act("Disable", `disable-${id}`, async () => {
                await api("PATCH", `v1/schedules/${id}`, { enabled: false });
                await load();
              }, "secondary")
            : act("Enable", `enable-${id}`, async () => {
                await api("PATCH", `v1/schedules/${id}`, { enabled: true });
                await load();
              }),
          act("Run now", `execute-${id}`, async () => {
            const run = await api("POST", `v1/schedules/${id}/execute`);
            location.hash = `#/runs/${run.run_id}`;
          }, "outline")
        )
      )
    );
  }
  show(
    h("h2", {}, "Schedules"),
    note,
    h(
      "table",
      { class: "striped" },
      h(
        "thead",
        {},
        h("tr", {}, ["schedule", "task", "expression", "state", "next run", "last run", "actions"].map((name) => h("th", {}, name)))
      ),
      body
    )
  );
  await load();
}

/* ---------------------------------------------------------------- routing */

function route() {
  timers.forEach(clearInterval);
  timers = [];
  if (!sessionStorage.getItem(KEY)) return keyPage();
  document.getElementById("nav").hidden = false;
  const [path, search] = (location.hash.slice(1) || "/runs").split("?");
  const params = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean);
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.setAttribute("aria-current", link.dataset.nav === parts[0] ? "page" : "false");
  }
  if (parts[0] === "runs" && parts[1]) return runPage(decodeURIComponent(parts[1]));
  if (parts[0] === "tasks" && parts.length > 1) return taskPage(parts.slice(1).map(decodeURIComponent).join("/"));
  if (parts[0] === "tasks") return tasksPage();
  if (parts[0] === "schedules") return schedulesPage();
  return runsPage(params);
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("forget").addEventListener("click", (event) => {
    event.preventDefault();
    sessionStorage.removeItem(KEY);
    location.hash = "#/";
    route();
  });
  route();
});
