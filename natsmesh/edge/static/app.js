// natsmesh dashboard: plain JavaScript and SVG, no build step, no library.
// State arrives pushed over Server-Sent Events (api/events): topology, traffic, traces.
"use strict";

const state = { topology: { agents: [], edges: [], tools: [] }, traffic: null, traces: [], tool: null, trace: null };
const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}
const fmtRate = (r) => (r >= 100 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r > 0 ? r.toFixed(2) : "0");
const fmtMs = (ms) => (ms === null || ms === undefined ? "–" : ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : ms >= 10 ? ms.toFixed(0) + " ms" : ms.toFixed(1) + " ms");
const fmtPct = (p) => (p ? p.toFixed(1) + "%" : "0%");
function fmtBytes(b) {
  if (!b) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + " " + units[i];
}

// --- the event stream ---------------------------------------------------------------
function connect() {
  const source = new EventSource("api/events");
  source.onopen = () => { $("#live").className = "live on"; $("#live").textContent = "live"; };
  source.onerror = () => { $("#live").className = "live off"; $("#live").textContent = "reconnecting…"; };
  source.addEventListener("topology", (e) => { state.topology = JSON.parse(e.data); renderTopology(); renderTools(); });
  source.addEventListener("traffic", (e) => { state.traffic = JSON.parse(e.data); renderTraffic(); renderTopology(); });
  source.addEventListener("traces", (e) => { state.traces = JSON.parse(e.data); renderTraces(); refreshTrace(); });
}

// --- health and rates ---------------------------------------------------------------
function agentErrorPct(name) {
  // over the last minute only: an agent that failed long ago and is idle now is not failing
  const rows = (state.traffic?.tools || []).filter((r) => r.key[0] === name && r.window_calls > 0);
  return rows.length ? Math.max(...rows.map((r) => r.error_pct)) : 0;
}
function agentTraffic(name) {
  // an agent's data transferred: requests received and replies sent, over its tools
  const out = { rate: 0, bytes_in: 0, bytes_out: 0 };
  for (const r of state.traffic?.tools || []) if (r.key[0] === name) { out.rate += r.rate; out.bytes_in += r.bytes_in; out.bytes_out += r.bytes_out; }
  return out;
}
function agentLine(name) {
  const t = agentTraffic(name);
  return `${fmtRate(t.rate)}/s · in ${fmtBytes(t.bytes_in)} · out ${fmtBytes(t.bytes_out)}`;
}
function edgeRates() {
  const rates = new Map();
  for (const r of state.traffic?.edges || []) {
    const k = r.key[0] + "→" + r.key[1];
    rates.set(k, (rates.get(k) || 0) + r.rate);
  }
  return rates;
}

// --- topology -----------------------------------------------------------------------
// a point 70% along a cubic Bézier curve: edge labels sit near their callee, apart from each other
const bezier = (a, b, c, d, t = 0.7) => (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t ** 2 * c + t ** 3 * d;
let topologyDrawn = "";
function renderTopology() {
  const { agents, edges } = state.topology;
  const names = new Set(agents.map((a) => a.name));
  const rates = edgeRates();
  const inflight = Object.values(state.traffic?.instances || {}).reduce((s, i) => s + (Number(i.in_flight) || 0), 0);
  $("#summary").textContent = `${agents.length} agents · ${agents.reduce((s, a) => s + a.instances.length, 0)} instances · ${state.topology.tools.length} tools · ${inflight} in flight · ${state.traffic?.spans ?? 0} spans`;
  // redraw only when something shown changed (a redraw loses the hovered tooltip)
  const drawn = JSON.stringify([state.topology, [...rates].map(([k, r]) => [k, fmtRate(r)]), agents.map((a) => [agentErrorPct(a.name) >= 10, agentLine(a.name)])]);
  if (drawn === topologyDrawn) return;
  topologyDrawn = drawn;
  const all = new Map();
  for (const e of edges) all.set(e.from + "→" + e.to, { from: e.from, to: e.to, declared: true });
  const external = new Set();
  for (const r of state.traffic?.edges || []) {
    const [caller, callee] = r.key;
    if (!names.has(callee)) continue;
    if (!names.has(caller)) external.add(caller);
    const k = caller + "→" + callee;
    if (!all.has(k)) all.set(k, { from: caller, to: callee, declared: false });
  }
  const nodes = [...agents.map((a) => ({ id: a.name, agent: a })), ...[...external].map((id) => ({ id, agent: null }))];
  // layers: longest path from the callers
  const rank = new Map(nodes.map((n) => [n.id, 0]));
  const links = [...all.values()].filter((e) => rank.has(e.from) && rank.has(e.to) && e.from !== e.to);
  for (let i = 0; i < nodes.length; i++) {
    let moved = false;
    for (const e of links) if (rank.get(e.to) < rank.get(e.from) + 1 && rank.get(e.from) + 1 < nodes.length) { rank.set(e.to, rank.get(e.from) + 1); moved = true; }
    if (!moved) break;
  }
  const columns = [];
  for (const n of nodes) (columns[rank.get(n.id)] ||= []).push(n);
  const pos = new Map();
  columns.forEach((col, c) => {
    col.sort((a, b) => bary(a) - bary(b) || a.id.localeCompare(b.id));
    col.forEach((n, i) => pos.set(n.id, { c, i }));
  });
  function bary(n) {
    const ins = links.filter((e) => e.to === n.id && pos.has(e.from)).map((e) => pos.get(e.from).i);
    return ins.length ? ins.reduce((a, b) => a + b, 0) / ins.length : 0;
  }
  const W = 190, H = 58, GX = 90, GY = 22;
  const rows = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const width = Math.max(1, columns.length) * (W + GX), height = rows * (H + GY) + GY;
  const xy = (id) => { const p = pos.get(id); const col = columns[p.c]; const off = (height - col.length * (H + GY)) / 2; return { x: 10 + p.c * (W + GX), y: off + p.i * (H + GY) + GY / 2 }; };
  const svg = el("svg:svg", { viewBox: `0 0 ${width} ${height}`, height: Math.min(height, 560) });
  svg.append(el("svg:defs", {}, el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a94a3" }))));
  for (const e of links) {
    const a = xy(e.from), b = xy(e.to);
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const mx = (x1 + x2) / 2;
    const rate = rates.get(e.from + "→" + e.to) || 0;
    const cls = ["edge", e.declared ? "declared" : "observed", rate > 0 ? "busy" : ""].join(" ");
    svg.append(el("svg:g", { class: cls, "data-from": e.from, "data-to": e.to },
      el("svg:path", { d: x2 > x1 ? `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` : `M${a.x + W / 2},${a.y + H} C${a.x + W / 2},${a.y + H + 40} ${b.x + W / 2},${b.y + H + 40} ${b.x + W / 2},${b.y + H}`, "marker-end": "url(#arrow)" }),
      rate > 0 ? el("svg:text", { x: bezier(x1, mx, mx, x2), y: bezier(y1, y1, y2, y2) - 4, "text-anchor": "middle", text: fmtRate(rate) + "/s" }) : null));
  }
  for (const n of nodes) {
    const { x, y } = xy(n.id);
    let health = "external", sub = "caller";
    const line = n.agent ? agentLine(n.id) : "";
    if (n.agent) {
      health = agentErrorPct(n.id) >= 10 ? "failing" : n.agent.health;
      const k = n.agent.instances.length;
      sub = `${k} instance${k > 1 ? "s" : ""} · ${n.agent.tools.length} tool${n.agent.tools.length > 1 ? "s" : ""}`;
    }
    const title = n.agent ? `${n.id} ${n.agent.version}\n${n.agent.description || ""}\n` + n.agent.instances.map((i) => `${i.id} on ${i.host} pid ${i.pid}`).join("\n") + (n.agent.missing.length ? `\nmissing: ${n.agent.missing.join(", ")}` : "") : n.id;
    svg.append(el("svg:g", { class: `node ${health} ${n.agent ? "agent" : ""}`, "data-agent": n.id, transform: `translate(${x},${y})` },
      el("svg:title", { text: title }),
      el("svg:rect", { width: W, height: H }),
      el("svg:text", { x: 10, y: 19, text: n.id }),
      el("svg:text", { x: 10, y: 34, class: "sub", text: sub }),
      el("svg:text", { x: 10, y: 49, class: "sub traffic", text: line })));
  }
  $("#topology").replaceChildren(svg);
}

// --- traffic ------------------------------------------------------------------------
function spark(values) {
  const w = 90, h = 18, max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i * w) / Math.max(1, values.length - 1)},${h - (v / max) * (h - 2) - 1}`).join(" ");
  return el("svg:svg", { class: "spark", width: w, height: h }, el("svg:polyline", { points: pts }));
}
const num = (text) => el("td", { class: "num", text });
function renderTraffic() {
  const t = state.traffic;
  if (!t) return;
  $("#feed-error").hidden = !t.feed_error;
  $("#feed-error").textContent = t.feed_error ? `No traffic or traces: ${t.feed_error}` : "";
  $("#tool-traffic tbody").replaceChildren(...t.tools.map((r) => el("tr", { class: r.error_pct > 0 ? "err" : "", "data-agent": r.key[0], "data-tool": r.key[1] },
    el("td", { text: r.key[0] }), el("td", { text: r.key[1] }), num(fmtRate(r.rate)), el("td", {}, spark(r.spark)), num(r.calls), num(fmtPct(r.error_pct)),
    num(fmtMs(r.p50_ms)), num(fmtMs(r.p99_ms)), num(fmtBytes(r.bytes_in)), num(fmtBytes(r.bytes_out)))));
  $("#edge-traffic tbody").replaceChildren(...t.edges.map((r) => el("tr", { class: r.error_pct > 0 ? "err" : "", "data-caller": r.key[0], "data-callee": r.key[1], "data-tool": r.key[2] },
    el("td", { text: r.key[0] }), el("td", { text: r.key[1] }), el("td", { text: r.key[2] }), num(fmtRate(r.rate)), el("td", {}, spark(r.spark)), num(r.calls),
    num(fmtPct(r.error_pct)), num(fmtMs(r.p50_ms)), num(fmtMs(r.p99_ms)), num(fmtBytes(r.bytes_out)), num(fmtBytes(r.bytes_in)))));
  $("#tokens tbody").replaceChildren(...t.tokens.map((r) => el("tr", { "data-model": r.model },
    el("td", { text: r.model }), el("td", { text: r.provider }), el("td", { text: r.agent }), num(r.calls), num(r.input), num(r.output))));
  $("#instances tbody").replaceChildren(...Object.entries(t.instances).sort((a, b) => a[1].agent.localeCompare(b[1].agent)).map(([id, i]) => el("tr", {},
    el("td", { text: i.agent }), el("td", { text: id }), num(i.in_flight ?? "–"), num(i.spans_published ?? "–"), num(i.spans_dropped ?? "–"))));
}

// --- tools and the call form --------------------------------------------------------
function renderTools() {
  const tools = state.topology.tools;
  $("#tool-count").textContent = `${tools.length} tool(s)`;
  $("#tools").replaceChildren(...tools.map((t) => el("li", { "data-tool": t.name, class: state.tool === t.name ? "selected" : "", onclick: () => selectTool(t.name) },
    el("span", {}, el("b", { text: t.name }), t.stream ? el("span", { class: "tag stream", text: "stream" }) : null, ...t.tags.map((g) => el("span", { class: "tag", text: g }))),
    el("small", { text: `${t.agents.join(", ")} ×${t.instances}` }))));
  if (state.tool && !tools.some((t) => t.name === state.tool)) $("#call-status").textContent = "no live provider any more";
}
function fieldFor(name, schema, required) {
  const s = schema.anyOf ? schema.anyOf.find((x) => x.type !== "null") || schema : schema;
  const label = `${name}${required ? " *" : ""}${s.type ? " (" + s.type + ")" : ""}${schema.description ? " — " + schema.description : ""}`;
  const value = schema.default !== undefined ? (typeof schema.default === "string" ? schema.default : JSON.stringify(schema.default)) : "";
  let input;
  if (s.type === "boolean") input = el("input", { type: "checkbox", name, "data-type": "boolean", checked: schema.default === true });
  else if (s.type === "integer" || s.type === "number") input = el("input", { type: "number", step: s.type === "integer" ? "1" : "any", name, "data-type": s.type, value });
  else if (s.type === "string" || (s.enum && !s.type)) input = el("input", { type: "text", name, "data-type": "string", value, placeholder: s.enum ? s.enum.join(" | ") : "" });
  else input = el("textarea", { name, "data-type": "json", rows: 2, placeholder: "JSON" }, value);
  return el("label", {}, label, input);
}
function selectTool(name) {
  const t = state.topology.tools.find((x) => x.name === name);
  if (!t) return;
  state.tool = name;
  renderTools();
  $("#tool-detail").hidden = false;
  $("#tool-title").textContent = `${t.name} (${t.capability} ${t.version})`;
  $("#tool-description").textContent = t.description || "";
  const props = t.input_schema.properties || {}, required = new Set(t.input_schema.required || []);
  $("#call-fields").replaceChildren(...Object.entries(props).map(([k, v]) => fieldFor(k, v, required.has(k))));
  $("#tool-schema").textContent = JSON.stringify({ input: t.input_schema, output: t.output_schema }, null, 2);
  $("#call-json").value = "";
  $("#call-result").textContent = "";
  $("#call-chunks").hidden = true;
  $("#call-status").textContent = "";
}
function formArguments() {
  const raw = $("#call-json").value.trim();
  if (raw) return JSON.parse(raw);
  const args = {};
  for (const input of $("#call-fields").querySelectorAll("[name]")) {
    const type = input.dataset.type;
    if (type === "boolean") { args[input.name] = input.checked; continue; }
    if (input.value === "") continue;
    args[input.name] = type === "string" ? input.value : type === "integer" || type === "number" ? Number(input.value) : JSON.parse(input.value);
  }
  return args;
}
function appendChunk(out, data) {
  // text streams word by word: join it; anything else gets a line of its own
  if (typeof data === "string") { out.textContent += data; return; }
  if (out.textContent && !out.textContent.endsWith("\n")) out.textContent += "\n";
  out.textContent += JSON.stringify(data) + "\n";
}
function showResult(payload) {
  const out = $("#call-result");
  out.className = payload.error ? "error" : "";
  const value = payload.error ? payload.error : payload.result;
  out.textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  if (payload.trace_id) showTraceLink(payload.trace_id);
}
function showTraceLink(id) {
  $("#call-status").replaceChildren("trace ", el("a", { id: "call-trace", "data-trace": id, onclick: () => openTrace(id), text: id.slice(0, 12) + "…" }));
}
async function submitCall(event) {
  event.preventDefault();
  const tool = state.topology.tools.find((x) => x.name === state.tool);
  if (!tool) return;
  let args;
  try { args = formArguments(); } catch (e) { showResult({ error: { type: "invalid_arguments", message: "not valid JSON: " + e.message } }); return; }
  $("#call-status").textContent = "calling…";
  $("#call-result").textContent = "";
  const chunks = $("#call-chunks");
  chunks.textContent = ""; chunks.hidden = !tool.stream;
  const response = await fetch("api/call/" + encodeURIComponent(tool.name), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(args) });
  if (!(response.headers.get("Content-Type") || "").startsWith("text/event-stream")) { showResult(await response.json()); return; }
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      const event = (block.match(/^event: (.*)$/m) || [])[1], data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "null");
      if (event === "trace") showTraceLink(data.trace_id);
      else if (event === "chunk") appendChunk(chunks, data);
      else if (event === "result" || event === "error") showResult(data);
    }
  }
}

// --- traces -------------------------------------------------------------------------
function renderTraces() {
  $("#traces tbody").replaceChildren(...state.traces.map((t) => el("tr", { "data-trace": t.trace_id, class: t.errors ? "err" : "", onclick: () => openTrace(t.trace_id) },
    el("td", { text: new Date(t.start * 1000).toLocaleTimeString() }), el("td", { text: `${t.root} (${t.service})` }), num(t.spans), num(fmtMs(t.duration_ms)), el("td", { text: t.errors ? "✗" : "✓" }))));
}
function refreshTrace() {
  if (!state.trace) return;
  const row = state.traces.find((t) => t.trace_id === state.trace.trace_id);
  if (row && row.all_spans !== state.trace.spans.length) openTrace(row.trace_id, true);
}
async function openTrace(id, quiet) {
  const response = await fetch("api/traces/" + encodeURIComponent(id));
  const data = await response.json();
  $("#trace-panel").hidden = false;
  $("#trace-title").textContent = id;
  if (!response.ok) { state.trace = null; $("#trace-summary").textContent = data.error; $("#trace-tree").replaceChildren(); $("#trace-waterfall").replaceChildren(); return; }
  state.trace = data;
  renderTrace();
  if (!quiet) $("#trace-panel").scrollIntoView({ behavior: "smooth" });
}
function renderTrace() {
  const { spans, tree } = state.trace;
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  const rows = [];
  const walk = (node, prefix, last, depth) => {
    rows.push({ span: byId.get(node.span_id), prefix: depth ? prefix + (last ? "└─ " : "├─ ") : "", depth });
    node.children.forEach((c, i) => walk(c, depth ? prefix + (last ? "   " : "│  ") : "", i === node.children.length - 1, depth + 1));
  };
  tree.forEach((r, i) => walk(r, "", i === tree.length - 1, 0));
  const t0 = Math.min(...spans.map((s) => s.start)), t1 = Math.max(...spans.map((s) => s.end));
  const total = Math.max(1, t1 - t0);
  const agents = new Set(rows.map((r) => r.span.service));
  const failed = spans.some((s) => s.status === 2);
  $("#trace-summary").textContent = `${rows.length} spans across ${agents.size} agents | ${fmtMs(total / 1e6)} | ${failed ? "✗" : "✓"}`;
  const label = (s) => {
    const a = s.attrs || {};
    let text = `${s.name} (${s.service}) [${fmtMs((s.end - s.start) / 1e6)}] ${s.status === 2 ? "✗ " + (a["error.type"] || "error") : "✓"}`;
    if (a["gen_ai.usage.input_tokens"] !== undefined) text += `  in ${a["gen_ai.usage.input_tokens"]} out ${a["gen_ai.usage.output_tokens"] || 0} tokens`;
    return text;
  };
  const detail = (s) => () => { const d = $("#span-detail"); d.hidden = false; d.textContent = JSON.stringify(s, null, 2); };
  $("#trace-tree").replaceChildren(...rows.map((r) => el("div", { class: "tree-node" + (r.span.status === 2 ? " error" : ""), "data-span": r.span.span_id, onclick: detail(r.span), text: r.prefix + label(r.span) })));
  $("#trace-waterfall").replaceChildren(...rows.map((r) => {
    const s = r.span, left = ((s.start - t0) / total) * 100, width = Math.max(0.3, ((s.end - s.start) / total) * 100);
    const llm = (s.attrs || {})["gen_ai.request.model"] !== undefined;
    return el("div", { class: "wf-row" + (s.status === 2 ? " error" : "") + (llm ? " llm" : ""), "data-span": s.span_id, onclick: detail(s), title: label(s) },
      el("div", { class: "wf-bar", style: `left:${left}%;width:${width}%` }),
      el("div", { class: "wf-label", style: left + width < 70 ? `left:calc(${left + width}% + 4px)` : `right:calc(${100 - left}% + 4px)`, text: `${s.name} ${fmtMs((s.end - s.start) / 1e6)}` }));
  }));
}

$("#call-form").addEventListener("submit", (e) => submitCall(e).catch((err) => showResult({ error: { type: "error", message: String(err) } })));
$("#trace-open").addEventListener("submit", (e) => { e.preventDefault(); const id = $("#trace-id").value.trim().toLowerCase(); if (id) openTrace(id); });
connect();
