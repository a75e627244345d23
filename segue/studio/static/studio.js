// Segue Studio: one page, plain JS, no build step and nothing loaded from elsewhere (deployments
// are often air-gapped). Every action is a call to Studio's HTTP API (segue/studio/app.py).
"use strict";

const CHANNELS = ["email", "sms", "push", "in_app", "webhook", "ads", "inbox", "content"];
const STEP_TYPES = ["send", "wait", "wait_event", "branch", "split", "holdout", "nba", "goto",
  "end"];
// The form of each step type: [field, kind, options]
const FIELDS = {
  send: [["channel", "select", CHANNELS], ["template", "text"],
    ["purpose", "select", ["marketing", "transactional"]], ["personalization", "list"],
    ["next", "step"]],
  wait: [["duration", "text", "e.g. 24h, 30m, 2d"], ["until", "text", "HH:MM local (instead of a duration)"],
    ["next", "step"]],
  wait_event: [["event", "text"], ["where", "condition"], ["timeout", "text", "e.g. 3d"],
    ["on_event", "step"], ["on_timeout", "step"]],
  branch: [["cases", "cases"], ["default", "step"]],
  split: [["variants", "variants"]],
  holdout: [["percent", "number"], ["next", "step"]],
  nba: [["actions", "json"], ["next", "step"]],
  goto: [["journey", "text"]],
  end: [],
};

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined)
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return e;
};
const svgEl = (tag, attrs = {}) => {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};
const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%");
const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "–");

function toast(msg, bad = false) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = "show" + (bad ? " bad" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.className = ""), 4000);
}

async function api(path, opts = {}) {
  const headers = { "Content-Type": "application/json" };
  const who = localStorage.getItem("segue-who");
  if (who) headers["X-Segue-User"] = who;
  const r = await fetch(path, { ...opts, headers });
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

// ----- journeys list --------------------------------------------------------------------
async function showList() {
  const data = await api("/api/journeys");
  const view = $("#view");
  view.replaceChildren(
    el("div", { class: "toolbar" }, el("h1", {}, "Journeys"), el("span", { class: "spacer" }),
      el("span", { class: "muted" }, `folder ${data.folder} · numbers: ${data.counts_source}`),
      el("button", { onclick: newJourney }, "+ New journey")),
    data.errors.length ? el("div", { class: "errors" }, data.errors.join("\n")) : "",
    el("table", { id: "journeys" },
      el("tr", {}, ["Journey", "Status", "Version", "Entered", "Active", "Converted",
        "Conv. rate", "Target", "Last change"].map((h, i) =>
        el("th", { class: i >= 3 && i <= 7 ? "num" : "" }, h))),
      data.journeys.map((j) => {
        const n = j.numbers || {};
        const c = j.last_change;
        return el("tr", { "data-journey": j.id },
          el("td", {}, el("a", { href: `#/j/${j.id}` }, j.id), " ",
            el("span", { class: "muted" }, j.name)),
          el("td", {}, el("span", { class: `pill ${j.status}` }, j.status),
            j.draft ? el("span", { class: "pill draft" }, "draft") : ""),
          el("td", { class: "num" }, j.version ? `v${j.version}` : "–"),
          el("td", { class: "num" }, fmt(n.entered)), el("td", { class: "num" }, fmt(n.active)),
          el("td", { class: "num" }, fmt(n.converted)),
          el("td", { class: "num" }, pct(n.conversion_rate)),
          el("td", { class: "num" }, j.target_conversion ? pct(j.target_conversion) : "–"),
          el("td", {}, c ? [`${c.action}${c.version ? " v" + c.version : ""}`, c.who, when(c.at_ms)].filter(Boolean).join(" · ") : "–"));
      })));
}

async function newJourney() {
  const id = prompt("Id of the new journey (lower-case letters, digits, - and _):");
  if (!id) return;
  try {
    await api("/api/journeys", { method: "POST", body: JSON.stringify({ id }) });
    location.hash = `#/j/${id}`;
  } catch (e) { toast(e.message, true); }
}

// ----- one journey ------------------------------------------------------------------------
const J = { id: null, detail: null, doc: null, draft: null, selected: null, version: null,
  tab: "yaml", backtest: null, saving: null, yamlTimer: null };

async function showJourney(id) {
  J.id = id;
  J.detail = await api(`/api/journeys/${id}`);
  J.draft = J.detail.draft;
  J.doc = J.draft ? J.draft.doc : J.detail.current.doc;
  const versions = Object.keys(J.detail.counts).map(Number).sort((a, b) => b - a);
  if (!versions.includes(J.version)) J.version = J.detail.current ? J.detail.current.version : versions[0];
  J.backtest = null;
  renderJourney();
}

function editing() { return J.draft !== null && J.draft !== undefined; }

function renderJourney() {
  const d = J.detail;
  const cur = d.current;
  const versions = [...new Set([...Object.keys(d.counts).map(Number),
    ...(cur ? [cur.version] : [])])].sort((a, b) => b - a);
  const sel = el("select", { id: "count-version", onchange: (e) => {
    J.version = Number(e.target.value); renderCanvas(); renderSide(); } },
    versions.map((v) => el("option", { value: v, selected: v === J.version ? "" : null }, `v${v}`)));
  const bar = el("div", { class: "toolbar" },
    el("h1", {}, d.id), cur ? el("span", { class: `pill ${cur.status}` }, `v${cur.version} ${cur.status}`) : "",
    editing() ? el("span", { class: "pill draft", id: "draft-pill" }, `draft v${d.next_version}`) : "",
    el("span", { class: "spacer" }),
    el("label", { class: "muted" }, "counts of ", sel, ` · ${d.counts_source}`),
    editing() ? [
      el("button", { id: "publish", class: "primary", onclick: publish,
        disabled: J.draft.valid ? null : "" }, `Publish v${d.next_version}`),
      el("button", { onclick: discard }, "Discard draft")]
      : el("button", { id: "edit", class: "primary", onclick: startDraft }, "Edit"),
    cur && cur.status === "active" ? el("button", { id: "pause", onclick: () => act("pause") }, "Pause") : "",
    cur && cur.status === "paused" ? el("button", { id: "resume", onclick: () => act("resume") }, "Resume") : "",
    cur && d.versions.some((v) => v.version < cur.version)
      ? el("button", { id: "rollback", class: "danger", onclick: rollback }, "Roll back") : "");
  $("#view").replaceChildren(bar,
    el("div", { class: "layout" }, el("div", { class: "canvas-wrap", id: "canvas" }),
      el("div", { class: "side", id: "side" })),
    el("div", { class: "tabs" }, el("div", { class: "tabbar" },
      ["yaml", "backtest", "history"].map((t) => el("button", { "data-tab": t,
        class: J.tab === t ? "on" : "", onclick: () => { J.tab = t; renderJourney(); } },
        { yaml: editing() ? "YAML (draft)" : "YAML", backtest: "Backtest", history: "Versions" }[t]))),
      el("div", { class: "tabpane", id: "tabpane" })));
  renderCanvas();
  renderSide();
  renderTab();
}

function graphOf() {
  return editing() ? (J.draft.graph || { nodes: [], edges: [], width: 400, height: 200 })
    : J.detail.current.graph;
}

function countsOf() { return (J.detail.counts || {})[J.version] || null; }

function nodeCountText(n, c) {
  if (!c) return "";
  if (n.id === "@entry") return `${fmt(c.entered_customers)} customers · ${fmt(c.entered)} entries`;
  if (n.id === "@end") {
    let done = 0;
    for (const s of Object.values(c.nodes)) done += (s.ended || {}).completed || 0;
    return `${fmt(done)} completed`;
  }
  const s = c.nodes[n.id];
  if (!s) return "0 customers";
  let t = `${fmt(s.customers)} customers · ${fmt(s.visits)} visits`;
  if (s.dropped) t += ` · drop ${pct(s.drop_off_rate)}`;
  return t;
}

function renderCanvas() {
  const g = graphOf();
  const c = countsOf();
  const svg = svgEl("svg", { width: Math.max(g.width, 400), height: g.height, id: "graph" });
  const defs = svgEl("defs");
  const marker = svgEl("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svgEl("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#98a2b3" }));
  defs.append(marker);
  svg.append(defs);
  const pos = Object.fromEntries(g.nodes.map((n) => [n.id, n]));
  for (const e of g.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    const x1 = a.x + a.w / 2, y1 = a.y + a.h, x2 = b.x + b.w / 2, y2 = b.y;
    let d;
    if (y2 > y1) d = `M ${x1} ${y1} C ${x1} ${y1 + 30}, ${x2} ${y2 - 30}, ${x2} ${y2}`;
    else { const side = Math.max(a.x + a.w, b.x + b.w) + 30;
      d = `M ${a.x + a.w} ${a.y + a.h / 2} C ${side} ${a.y + a.h / 2}, ${side} ${b.y + b.h / 2}, ${b.x + b.w} ${b.y + b.h / 2}`; }
    svg.append(svgEl("path", { d, class: "edge" + (e.broken ? " broken" : ""),
      "marker-end": "url(#arrow)" }));
    if (e.label) {
      const t = svgEl("text", { x: (x1 + x2) / 2 + 4, y: (y1 + y2) / 2, class: "elabel" });
      t.textContent = e.label.length > 34 ? e.label.slice(0, 33) + "…" : e.label;
      svg.append(t);
    }
  }
  for (const n of g.nodes) {
    const grp = svgEl("g", { class: `node ${n.kind}` + (J.selected === n.id ? " selected" : ""),
      "data-node": n.id, transform: `translate(${n.x},${n.y})` });
    grp.append(svgEl("rect", { width: n.w, height: n.h }));
    const tip = svgEl("title"); tip.textContent = `${n.title}: ${n.text}`; grp.append(tip);
    const lines = [[n.title + (n.kind !== "entry" && n.kind !== "end" ? `  (${n.kind})` : ""), "title", 18],
      [n.text.length > 36 ? n.text.slice(0, 35) + "…" : n.text, "text", 35],
      [nodeCountText(n, c), "counts", 54]];
    for (const [text, cls, y] of lines) {
      const t = svgEl("text", { x: 10, y, class: cls });
      t.textContent = text;
      grp.append(t);
    }
    grp.addEventListener("click", () => { J.selected = n.id; renderCanvas(); renderSide(); });
    svg.append(grp);
  }
  // Goals and exits apply at every step: listed beside the graph with their counts.
  const side = [...(g.goals || []).map((x) => [`goal ${x.name}: on ${x.event}`, c ? `${fmt((c.goals || {})[x.name] || 0)} conversions` : ""]),
    ...(g.exits || []).map((x) => [`exit ${x.name}: ${x.event ? "on " + x.event : x.after ? "after " + x.after : x.inactive ? "inactive " + x.inactive : "when " + x.when}`,
      c ? `${fmt((c.exits || {})[x.name] || 0)} runs` : ""])];
  if (side.length) {
    const x0 = Math.max(g.width, 400) + 10;
    svg.setAttribute("width", x0 + 250);
    const box = svgEl("g", { class: "node goals", transform: `translate(${x0},20)`, "data-node": "@entry" });
    box.append(svgEl("rect", { width: 240, height: 14 + 34 * side.length }));
    side.forEach(([title, count], i) => {
      const t = svgEl("text", { x: 10, y: 20 + 34 * i, class: "text" }); t.textContent = title.length > 38 ? title.slice(0, 37) + "…" : title;
      const n = svgEl("text", { x: 10, y: 35 + 34 * i, class: "counts" }); n.textContent = count;
      box.append(t, n);
    });
    box.addEventListener("click", () => { J.selected = "@entry"; renderCanvas(); renderSide(); });
    svg.append(box);
  }
  $("#canvas").replaceChildren(svg);
}

// ----- the side panel: a node's counts, and its form when editing -----------------------------
function errorsAt(path) {
  if (!editing()) return [];
  return (J.draft.errors || []).filter((e) => e.field === path || (e.field || "").startsWith(path + "."));
}

function field(label, path, input, hint) {
  const errs = errorsAt(path);
  return el("div", { class: "field" + (errs.length ? " invalid" : ""), "data-field": path },
    el("label", {}, label, hint ? el("span", { class: "muted" }, ` — ${hint}`) : ""), input,
    errs.map((e) => el("div", { class: "err" }, e.message)));
}

function stepIds() { return Object.keys((J.doc && J.doc.steps) || {}); }

function inputFor(kind, value, onchange, opts) {
  const ro = !editing();
  if (kind === "select" || kind === "step") {
    const options = kind === "step" ? ["", ...stepIds()] : opts;
    const s = el("select", { disabled: ro ? "" : null, onchange: (e) => onchange(e.target.value || undefined) },
      options.map((o) => el("option", { value: o, selected: String(value ?? "") === o ? "" : null },
        kind === "step" && o === "" ? "(end of journey)" : o)));
    return s;
  }
  if (kind === "json") {
    return el("textarea", { rows: 5, readonly: ro ? "" : null, onchange: (e) => {
      try { onchange(e.target.value.trim() ? JSON.parse(e.target.value) : undefined); }
      catch (err) { toast("not JSON: " + err.message, true); } } },
    value === undefined ? "" : JSON.stringify(value, null, 1));
  }
  if (kind === "list") {
    return el("input", { value: (value || []).join(", "), readonly: ro ? "" : null,
      onchange: (e) => onchange(e.target.value.split(",").map((x) => x.trim()).filter(Boolean)) });
  }
  return el("input", { value: value ?? "", readonly: ro ? "" : null,
    placeholder: kind === "condition" ? "e.g. traits.plan == 'pro'" : "",
    oninput: (e) => onchange(e.target.value === "" ? undefined :
      kind === "number" ? Number(e.target.value) : e.target.value) });
}

function setAt(obj, keys, value) {
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k];
  const last = keys[keys.length - 1];
  if (value === undefined) delete o[last]; else o[last] = value;
}

function changed(keys, value, redraw = false) {
  setAt(J.doc, keys, value);
  clearTimeout(J.saving);
  J.saving = setTimeout(() => saveDoc(redraw), 250);
}

async function saveDoc(redraw) {
  try {
    J.draft = await api(`/api/journeys/${J.id}/draft`, { method: "POST", body: JSON.stringify({ doc: J.doc }) });
    if (J.draft.doc) J.doc = J.draft.doc;
    refreshAfterSave(redraw);
  } catch (e) { toast(e.message, true); }
}

function refreshAfterSave(redraw) {
  renderCanvas();
  if (redraw) renderSide(); else markErrors();
  const pub = $("#publish");
  if (pub) pub.disabled = !J.draft.valid;
  if (J.tab === "yaml") {
    const ta = $("#yaml");
    if (ta && document.activeElement !== ta) ta.value = J.draft.yaml;
    renderYamlErrors();
  }
}

function markErrors() {
  // Field errors in place, without rebuilding the inputs (the caret stays where it is).
  for (const f of document.querySelectorAll("#side .field")) {
    const errs = errorsAt(f.dataset.field);
    f.classList.toggle("invalid", errs.length > 0);
    f.querySelectorAll(".err").forEach((x) => x.remove());
    for (const e of errs) f.append(el("div", { class: "err" }, e.message));
  }
  const others = (J.draft.errors || []).filter((e) => !document.querySelector(`#side .field[data-field="${e.field}"]`));
  const box = $("#side-errors");
  if (box) box.textContent = others.map((e) => e.text).join("\n");
}

function renderSide() {
  const side = $("#side");
  const id = J.selected;
  const c = countsOf();
  const doc = J.doc || {};
  const parts = [];
  if (!id || id === "@entry") {
    const e = doc.entry || {};
    parts.push(el("h2", {}, "Entry"));
    if (c) parts.push(el("div", { class: "muted", id: "entry-counts" },
      `${fmt(c.entered_customers)} customers entered (${fmt(c.entered)} entries), ${fmt(c.converted)} conversions (${pct(c.conversion_rate)}), ${fmt(c.active)} active`));
    const ev = Array.isArray(e.event) ? e.event.join(", ") : (e.event || "");
    parts.push(field("trigger event(s)", "entry.event", inputFor("text", ev, (v) =>
      changed(["entry", "event"], v && v.includes(",") ? v.split(",").map((x) => x.trim()) : v))));
    parts.push(field("when (condition)", "entry.when", inputFor("condition", e.when, (v) => changed(["entry", "when"], v))));
    parts.push(field("exclude (condition)", "entry.exclude", inputFor("condition", e.exclude, (v) => changed(["entry", "exclude"], v))));
    const re = typeof e.reentry === "object" ? "after" : (e.reentry || "never");
    parts.push(field("re-entry", "entry.reentry", inputFor("select", re, (v) =>
      changed(["entry", "reentry"], v === "after" ? { after: "7d" } : v, true), ["never", "after_exit", "after"])));
    if (typeof e.reentry === "object") parts.push(field("re-entry after", "entry.reentry.after",
      inputFor("text", e.reentry.after, (v) => changed(["entry", "reentry", "after"], v))));
    parts.push(el("h2", {}, "Goals"));
    (doc.goals || []).forEach((g, i) => parts.push(el("div", { class: "sub" },
      field("name", `goals.${i}.name`, inputFor("text", g.name, (v) => changed(["goals", i, "name"], v))),
      field("event", `goals.${i}.event`, inputFor("text", g.event, (v) => changed(["goals", i, "event"], v))),
      field("when", `goals.${i}.when`, inputFor("condition", g.when, (v) => changed(["goals", i, "when"], v))),
      c ? el("div", { class: "muted" }, `${fmt((c.goals || {})[g.name] || 0)} conversions`) : "")));
    if (editing()) parts.push(el("button", { onclick: () => { doc.goals = [...(doc.goals || []),
      { name: "goal", event: "Order Completed" }]; changed(["goals"], doc.goals, true); } }, "+ goal"));
    parts.push(el("h2", {}, "Exits"));
    (doc.exits || []).forEach((x, i) => parts.push(el("div", { class: "sub" },
      ["name", "event", "when", "after", "inactive", "goto"].map((k) => field(k, `exits.${i}.${k}`,
        inputFor(k === "when" ? "condition" : "text", x[k], (v) => changed(["exits", i, k], v)))),
      c ? el("div", { class: "muted" }, `${fmt((c.exits || {})[x.name] || 0)} runs left here`) : "")));
    if (editing()) parts.push(el("button", { onclick: () => { doc.exits = [...(doc.exits || []),
      { name: "exit", event: "Unsubscribed" }]; changed(["exits"], doc.exits, true); } }, "+ exit"));
    if (editing()) parts.push(addStepControls("@entry"));
  } else if (id === "@end") {
    parts.push(el("h2", {}, "End of journey"), el("div", { class: "muted" }, nodeCountText({ id }, c)));
  } else {
    const step = (doc.steps || {})[id];
    if (!step) { J.selected = null; return renderSide(); }
    parts.push(el("h2", {}, `Step ${id}`));
    const s = c && c.nodes[id];
    if (s) {
      parts.push(el("table", { id: "node-counts" },
        el("tr", {}, el("th", {}, "customers"), el("td", { class: "num" }, fmt(s.customers))),
        el("tr", {}, el("th", {}, "visits"), el("td", { class: "num" }, fmt(s.visits))),
        el("tr", {}, el("th", {}, "ended here"), el("td", {}, Object.entries(s.ended).map(([k, v]) => `${k} ${v}`).join(", ") || "0")),
        el("tr", {}, el("th", {}, "converted here"), el("td", { class: "num" }, fmt(s.converted))),
        el("tr", {}, el("th", {}, "drop-off"), el("td", { class: "num" }, pct(s.drop_off_rate)))));
    } else if (c) parts.push(el("div", { class: "muted" }, `no customer reached this step in v${J.version}`));
    if (step.type === "split" && c && c.split) parts.push(experiment("Split arms", c.split.map((a) => [a.variant, a])));
    if (step.type === "holdout" && c && c.holdout) parts.push(experiment("Holdout", [["held out vs treated", c.holdout]]));
    parts.push(field("type", `steps.${id}.type`, inputFor("select", step.type, (v) => {
      J.doc.steps[id] = defaultStep(v, firstTarget(step)); changed(["steps", id], J.doc.steps[id], true); }, STEP_TYPES)));
    for (const [k, kind, opts] of FIELDS[step.type] || []) {
      const path = `steps.${id}.${k}`;
      if (kind === "cases") {
        (step.cases || []).forEach((cs, i) => parts.push(el("div", { class: "sub" },
          field(`case ${i + 1}: when`, `${path}.${i}.when`, inputFor("condition", cs.when, (v) => changed(["steps", id, "cases", i, "when"], v))),
          field("then", `${path}.${i}.next`, inputFor("step", cs.next, (v) => changed(["steps", id, "cases", i, "next"], v, true))))));
        if (editing()) parts.push(el("button", { onclick: () => { step.cases = [...(step.cases || []),
          { when: "true", next: step.default }]; changed(["steps", id, "cases"], step.cases, true); } }, "+ case"));
      } else if (kind === "variants") {
        (step.variants || []).forEach((va, i) => parts.push(el("div", { class: "sub" },
          field("arm", `${path}.${i}.name`, inputFor("text", va.name, (v) => changed(["steps", id, "variants", i, "name"], v))),
          field("weight", `${path}.${i}.weight`, inputFor("number", va.weight, (v) => changed(["steps", id, "variants", i, "weight"], v))),
          field("then", `${path}.${i}.next`, inputFor("step", va.next, (v) => changed(["steps", id, "variants", i, "next"], v, true))))));
        if (editing()) parts.push(el("button", { onclick: () => { step.variants = [...(step.variants || []),
          { name: `arm${(step.variants || []).length + 1}`, weight: 1, next: (step.variants || [{}])[0].next }];
        changed(["steps", id, "variants"], step.variants, true); } }, "+ arm"));
      } else {
        parts.push(field(k, path, inputFor(kind, step[k], (v) => changed(["steps", id, k], v, kind === "step"), opts),
          kind === "text" && typeof opts === "string" ? opts : null));
      }
    }
    if (editing()) {
      parts.push(addStepControls(id));
      parts.push(el("button", { class: "danger", id: "delete-step", onclick: () => deleteStep(id) }, "Delete step"));
    }
  }
  parts.push(el("div", { class: "errors", id: "side-errors" }));
  side.replaceChildren(...parts);
  if (editing()) markErrors();
}

function experiment(title, arms) {
  return el("div", {}, el("h2", {}, title), el("table", { class: "experiment" },
    el("tr", {}, ["arm", "customers", "rate", "lift", "interval", "verdict"].map((h) => el("th", {}, h))),
    arms.map(([name, a]) => { const v = a.vs_control || a;
      return el("tr", {}, el("td", {}, name), el("td", { class: "num" }, fmt(a.customers)),
        el("td", { class: "num" }, pct(a.rate)), el("td", { class: "num" }, v.lift !== undefined ? pct(v.lift) : "–"),
        el("td", {}, v.ci ? `[${pct(v.ci[0])}, ${pct(v.ci[1])}]` : "–"), el("td", {}, v.verdict || "–")); })));
}

function firstTarget(step) {
  return step.next || step.default || step.on_timeout || ((step.variants || [])[0] || {}).next || undefined;
}

function defaultStep(type, next) {
  const n = next;
  switch (type) {
    case "send": return { type, channel: "email", template: "new-template", next: n };
    case "wait": return { type, duration: "1d", next: n };
    case "wait_event": return { type, event: "Order Completed", timeout: "3d", on_event: n, on_timeout: n };
    case "branch": return { type, cases: [{ when: "true", next: n }], default: n };
    case "split": return { type, variants: [{ name: "control", weight: 1, next: n }, { name: "treatment", weight: 1, next: n }] };
    case "holdout": return { type, percent: 10, next: n };
    case "nba": return { type, next: n };
    case "goto": return { type, journey: J.id };
    default: return { type: "end" };
  }
}

function addStepControls(after) {
  const sel = el("select", { id: "new-step-type" }, STEP_TYPES.map((t) => el("option", { value: t }, t)));
  return el("div", { class: "field" }, el("label", {}, after === "@entry" ? "add a first step" : "add a step after this one"),
    el("div", { class: "toolbar" }, sel, el("button", { id: "add-step", onclick: () => addStep(after, sel.value) }, "+ Add")));
}

function addStep(after, type) {
  const steps = J.doc.steps;
  let n = 1;
  while (steps[`${type}_${n}`]) n++;
  const id = `${type}_${n}`;
  if (after === "@entry") {
    steps[id] = defaultStep(type, J.doc.start);
    J.doc.start = id;
  } else {
    const prev = steps[after];
    if ("next" in prev || ["send", "wait", "holdout", "nba"].includes(prev.type)) {
      steps[id] = defaultStep(type, prev.next);
      prev.next = id;
    } else steps[id] = defaultStep(type, undefined);
  }
  J.selected = id;  // the new step's form opens at once
  changed(["steps"], steps, true);
}

function deleteStep(id) {
  const steps = J.doc.steps;
  const target = firstTarget(steps[id]);
  delete steps[id];
  const fix = (v) => (v === id ? target : v);
  for (const s of Object.values(steps)) {
    for (const k of ["next", "default", "on_event", "on_timeout"]) if (k in s) {
      s[k] = fix(s[k]); if (s[k] === undefined) delete s[k]; }
    for (const c of s.cases || []) c.next = fix(c.next);
    for (const v of s.variants || []) v.next = fix(v.next);
  }
  if (J.doc.start === id) J.doc.start = target;
  J.selected = null;
  changed(["steps"], steps, true);
}

// ----- tabs: YAML, backtest, versions ---------------------------------------------------------
function renderTab() {
  const pane = $("#tabpane");
  if (J.tab === "yaml") {
    const text = editing() ? J.draft.yaml : J.detail.current.yaml;
    const ta = el("textarea", { class: "yaml", id: "yaml", spellcheck: "false", readonly: editing() ? null : "" }, text);
    ta.addEventListener("input", () => {
      clearTimeout(J.yamlTimer);
      J.yamlTimer = setTimeout(async () => {
        try {
          J.draft = await api(`/api/journeys/${J.id}/draft`, { method: "POST", body: JSON.stringify({ yaml: ta.value }) });
          if (J.draft.doc) J.doc = J.draft.doc;
          renderCanvas(); renderSide(); renderYamlErrors();
          const pub = $("#publish"); if (pub) pub.disabled = !J.draft.valid;
        } catch (e) { toast(e.message, true); }
      }, 400);
    });
    pane.replaceChildren(editing() ? "" : el("div", { class: "muted" }, `${J.detail.current.file} (read-only: press Edit to start a draft)`),
      ta, el("div", { id: "yaml-errors" }));
    renderYamlErrors();
  } else if (J.tab === "backtest") {
    renderBacktest(pane);
  } else {
    renderHistory(pane);
  }
}

function renderYamlErrors() {
  const box = $("#yaml-errors");
  if (!box || !editing()) return;
  box.replaceChildren(J.draft.errors.length
    ? el("div", { class: "errors" }, J.draft.errors.map((e) => e.text).join("\n"))
    : el("div", { class: "ok" }, "✓ the draft is valid"));
}

async function renderBacktest(pane) {
  const list = await api("/api/journeys");
  const files = list.events || [];
  const sources = files.map((f) => [f, f]);
  if (list.live) for (const h of [1, 24, 168]) sources.push([`topic:${h}`, `last ${h} h of ${list.events_topic}`]);
  const sel = el("select", { id: "bt-events" }, sources.map(([v, label]) => el("option", { value: v }, label)));
  const go = el("button", { id: "run-backtest", class: "primary", disabled: editing() && sources.length ? null : "",
    onclick: async () => {
      go.disabled = true; go.textContent = "running…";
      const req = sel.value.startsWith("topic:") ? { hours: Number(sel.value.slice(6)) } : { events: sel.value };
      try {
        J.backtest = await api(`/api/journeys/${J.id}/backtest`, { method: "POST", body: JSON.stringify(req) });
      } catch (e) { toast(e.message, true); }
      renderTab();
    } }, "Run backtest");
  const head = el("div", { class: "toolbar" }, "Replay ", sel, " through the current version and the draft ", go,
    !editing() ? el("span", { class: "muted" }, "(start a draft first)") : "",
    !sources.length ? el("span", { class: "muted" }, "(start Studio with --events FILE or --brokers)") : "");
  const parts = [head];
  const b = J.backtest;
  if (b) {
    const cur = b.current || { counts: null, sends_by_channel: {}, version: "–" };
    const dr = b.draft;
    const cc = cur.counts || { nodes: {} }, dc = dr.counts || { nodes: {} };
    const nodes = [...new Set([...Object.keys(cc.nodes), ...Object.keys(dc.nodes)])].sort();
    parts.push(el("div", { class: "muted" }, `${b.events}: ${fmt(dr.events)} events, ${b.seconds}s · ${fmt(b.customers_changed)} of ${fmt(b.customers)} customers change outcome`));
    parts.push(el("table", { id: "backtest-steps" },
      el("tr", {}, el("th", {}, "step"), el("th", { class: "num" }, `v${cur.version} customers`), el("th", { class: "num" }, `v${cur.version} visits`),
        el("th", { class: "num" }, `draft v${dr.version} customers`), el("th", { class: "num" }, `draft v${dr.version} visits`), el("th", { class: "num" }, "Δ customers")),
      el("tr", { "data-step": "@entry" }, el("td", {}, "entered"), el("td", { class: "num" }, fmt(cc.entered_customers)), el("td", { class: "num" }, fmt(cc.entered)),
        el("td", { class: "num" }, fmt(dc.entered_customers)), el("td", { class: "num" }, fmt(dc.entered)), el("td", { class: "num" }, fmt((dc.entered_customers || 0) - (cc.entered_customers || 0)))),
      nodes.map((n) => { const a = cc.nodes[n] || {}, z = dc.nodes[n] || {};
        return el("tr", { "data-step": n }, el("td", {}, n), el("td", { class: "num" }, fmt(a.customers || 0)), el("td", { class: "num" }, fmt(a.visits || 0)),
          el("td", { class: "num" }, fmt(z.customers || 0)), el("td", { class: "num" }, fmt(z.visits || 0)),
          el("td", { class: "num" }, fmt((z.customers || 0) - (a.customers || 0)))); }),
      el("tr", { "data-step": "@converted" }, el("td", {}, "converted"), el("td", { class: "num" }, fmt(cc.converted_customers)), el("td", { class: "num" }, fmt(cc.converted)),
        el("td", { class: "num" }, fmt(dc.converted_customers)), el("td", { class: "num" }, fmt(dc.converted)), el("td", { class: "num" }, fmt((dc.converted_customers || 0) - (cc.converted_customers || 0))))));
    const chans = [...new Set([...Object.keys(cur.sends_by_channel), ...Object.keys(dr.sends_by_channel)])];
    parts.push(el("h2", {}, "Sends by channel"), el("table", { id: "backtest-sends" },
      el("tr", {}, el("th", {}, "channel"), el("th", { class: "num" }, `v${cur.version}`), el("th", { class: "num" }, `draft v${dr.version}`)),
      chans.map((ch) => el("tr", {}, el("td", {}, ch), el("td", { class: "num" }, fmt(cur.sends_by_channel[ch] || 0)), el("td", { class: "num" }, fmt(dr.sends_by_channel[ch] || 0))))));
    parts.push(el("h2", {}, `Customers whose outcome changes (${fmt(b.customers_changed)}${b.changed.length < b.customers_changed ? `, first ${b.changed.length}` : ""})`),
      el("table", { id: "backtest-customers" },
        el("tr", {}, ["customer", `v${cur.version}: path`, "draft: path", "decisions only in current", "decisions only in draft", "converted"].map((h) => el("th", {}, h))),
        b.changed.slice(0, 50).map((x) => el("tr", {}, el("td", {}, x.customer_id),
          el("td", { class: "diffcell" }, x.current.path.join(" → ")), el("td", { class: "diffcell" }, x.draft.path.join(" → ")),
          el("td", { class: "diffcell" }, few(x.decisions_only_current)), el("td", { class: "diffcell" }, few(x.decisions_only_draft)),
          el("td", {}, `${x.converted[0] ? "yes" : "no"} → ${x.converted[1] ? "yes" : "no"}`)))));
  }
  pane.replaceChildren(...parts);
}

function few(lines, n = 5) {
  return lines.slice(0, n).join("\n") + (lines.length > n ? `\n… and ${lines.length - n} more` : "");
}

async function renderHistory(pane) {
  const vs = J.detail.versions;
  const rows = vs.map((v) => el("tr", {}, el("td", {}, `v${v.version}`), el("td", {}, v.action),
    el("td", {}, v.published_by || "–"), el("td", {}, v.published_at || "–"),
    el("td", {}, vs.some((o) => o.version < v.version)
      ? el("button", { onclick: () => showDiff(v.version - 1, v.version) }, `diff v${v.version - 1} → v${v.version}`) : "")));
  pane.replaceChildren(el("table", { id: "versions" }, el("tr", {}, ["version", "how", "who", "when", ""].map((h) => el("th", {}, h))), rows),
    el("div", { id: "diff" }));
}

async function showDiff(a, b) {
  try {
    const d = await api(`/api/journeys/${J.id}/diff?a=${a}&b=${b}`);
    $("#diff").replaceChildren(el("pre", { class: "diff" }, d.diff.split("\n").map((l) =>
      el("div", { class: l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : "" }, l))));
  } catch (e) { toast(e.message, true); }
}

async function startDraft() {
  try { await api(`/api/journeys/${J.id}/draft`, { method: "POST", body: "{}" }); await showJourney(J.id); }
  catch (e) { toast(e.message, true); }
}
async function discard() {
  if (!confirm("Discard the draft?")) return;
  await api(`/api/journeys/${J.id}/draft`, { method: "DELETE" });
  await showJourney(J.id);
}
async function publish() {
  try {
    const r = await api(`/api/journeys/${J.id}/publish`, { method: "POST", body: "{}" });
    toast(`published ${J.id} v${r.version}: new entries get it`);
    J.version = r.version;
    await showJourney(J.id);
  } catch (e) { toast(e.message, true); }
}
async function act(name) {
  try {
    const r = await api(`/api/journeys/${J.id}/${name}`, { method: "POST", body: "{}" });
    toast(`${J.id} v${r.version}: ${name}d`);
    await showJourney(J.id);
  } catch (e) { toast(e.message, true); }
}
async function rollback() {
  const older = J.detail.versions.filter((v) => v.version < J.detail.current.version).map((v) => v.version);
  const to = prompt(`Roll back ${J.id} to which version? (${older.join(", ")})`, String(older[0]));
  if (!to) return;
  try {
    const r = await api(`/api/journeys/${J.id}/rollback`, { method: "POST", body: JSON.stringify({ version: Number(to) }) });
    toast(`${J.id}: new entries get v${r.version} again`);
    await showJourney(J.id);
  } catch (e) { toast(e.message, true); }
}

// ----- live dashboard ---------------------------------------------------------------------
function bars(id, entries) {
  const max = Math.max(1, ...entries.map(([, v]) => v));
  const svg = svgEl("svg", { width: 320, height: 22 * entries.length + 4, class: "bar", id });
  entries.forEach(([k, v], i) => {
    const t = svgEl("text", { x: 0, y: 22 * i + 15 }); t.textContent = k; svg.append(t);
    svg.append(svgEl("rect", { x: 130, y: 22 * i + 4, height: 14, width: Math.max(1, 150 * v / max) }));
    const n = svgEl("text", { x: 135 + 150 * v / max, y: 22 * i + 15 }); n.textContent = fmt(v); svg.append(n);
  });
  return svg;
}

function renderDashboard(f) {
  const box = $("#dash");
  if (!box) return;
  if (f.error && !f.journeys) { box.replaceChildren(el("div", { class: "errors" }, f.error)); return; }
  const a = f.activity;
  const rows = Object.entries(f.journeys).sort((x, y) => y[1].entered - x[1].entered);
  box.replaceChildren(
    el("div", { class: "muted", id: "dash-status" }, `as of ${when(f.as_of_ms)} (event time) · `,
      el("span", { id: "records-read" }, fmt(f.records_read)), ` records read · updated ${new Date(f.sent_at_ms || Date.now()).toLocaleTimeString()}`, f.error ? ` · ${f.error}` : ""),
    el("div", { class: "grid" },
      el("div", { class: "card" }, el("h2", {}, `Journeys (${f.journeys_source})`),
        el("table", { id: "dash-journeys" }, el("tr", {}, ["journey", "active", "completed", "converted", "rate"].map((h) => el("th", {}, h))),
          rows.map(([j, r]) => el("tr", {}, el("td", {}, el("a", { href: `#/j/${j}` }, j)), el("td", { class: "num" }, fmt(Math.max(r.active, 0))),
            el("td", { class: "num" }, fmt(r.completed)), el("td", { class: "num" }, fmt(r.converted)),
            el("td", { class: "num" }, pct(r.entered ? r.converted / r.entered : 0)))))),
      el("div", { class: "card", id: "dash-activity" }, el("h2", {}, `Trigger activity (${f.activity_label})`),
        el("div", { class: "big" }, fmt(a.triggers_fired)), el("div", { class: "muted" }, "triggers fired"),
        bars("activity-bars", [["executed", a.actions_executed], ["failed", a.failed_deliveries], ["capped", a.suppressed_cap],
          ["opted out", a.suppressed_opt_out], ["quiet hours", a.deferred_quiet_hours]])),
      el("div", { class: "card" }, el("h2", {}, "Suppressions by reason"),
        bars("suppression-bars", Object.entries(f.suppressions_by_reason))),
      el("div", { class: "card" }, el("h2", {}, "Dispatches by channel"),
        bars("channel-bars", Object.entries(f.dispatches_by_channel)),
        el("div", { class: "muted" }, `identity merges ${fmt(f.merges)} · dead letters ${fmt(f.dlq)}`)),
      el("div", { class: "card" }, el("h2", {}, "Next best action"),
        el("div", {}, `${fmt(f.nba.decisions)} decisions · model ${f.nba.model} · avg confidence ${f.nba.avg_confidence === null ? "n/a" : pct(f.nba.avg_confidence)} · explored ${pct(f.nba.explored_rate)}`),
        bars("nba-bars", f.nba.top_actions)),
      el("div", { class: "card", id: "dash-alerts" }, el("h2", {}, "Alerts"),
        f.alerts.length ? el("ul", {}, f.alerts.map((x) => el("li", {}, x))) : el("div", { class: "muted" }, "none")),
      f.trends && f.trends.length ? el("div", { class: "card" }, el("h2", {}, "Performance (segue.analytics)"),
        el("ul", {}, f.trends.map((x) => el("li", {}, x)))) : ""));
}

let source = null;
function showDashboard() {
  $("#view").replaceChildren(el("h1", {}, "Live dashboard"), el("div", { id: "dash" }, "connecting…"));
  source = new EventSource("/api/live");
  source.onmessage = (m) => renderDashboard(JSON.parse(m.data));
}

async function showAudit() {
  const d = await api("/api/audit");
  $("#view").replaceChildren(el("h1", {}, "Audit log"), el("table", { id: "audit" },
    el("tr", {}, ["when", "who", "action", "journey", "version"].map((h) => el("th", {}, h))),
    d.audit.slice().reverse().map((a) => el("tr", {}, el("td", {}, a.at), el("td", {}, a.who),
      el("td", {}, a.action + (a.from ? ` (from v${a.from})` : "")), el("td", {}, a.journey), el("td", {}, a.version ? `v${a.version}` : "")))));
}

// ----- routing ------------------------------------------------------------------------------
async function route() {
  if (source) { source.close(); source = null; }
  const h = location.hash || "#/";
  for (const a of document.querySelectorAll("header nav a"))
    a.classList.toggle("active", h.startsWith(a.getAttribute("href")) && (a.getAttribute("href") !== "#/" || h === "#/"));
  try {
    if (h.startsWith("#/j/")) await showJourney(decodeURIComponent(h.slice(4)));
    else if (h === "#/dashboard") showDashboard();
    else if (h === "#/audit") await showAudit();
    else await showList();
  } catch (e) {
    $("#view").replaceChildren(el("div", { class: "errors" }, e.message));
  }
}

const who = $("#who");
who.value = localStorage.getItem("segue-who") || "";
who.addEventListener("change", () => localStorage.setItem("segue-who", who.value.trim()));
window.addEventListener("hashchange", () => { J.selected = null; route(); });
route();
