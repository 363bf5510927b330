//! `--html FILE`: one self-contained HTML page (no network, no CDN) that
//! pictures a client history and the linearizability verdict, in the manner
//! of Porcupine's visualizer.
//!
//! Per key: one row per client, each operation a bar from its invocation to
//! its completion (open-ended to the right edge for an unknown outcome),
//! labelled with its command and result. For a linearizable key, hovering
//! a bar shows its place in the linearization the checker found and
//! clicking it numbers every visible bar in that order. For a violation,
//! the operations of the longest linearizable prefix the search found are
//! numbered in their order, the operation that could not be placed and the
//! other candidates at that point are highlighted, a marker shows where the
//! blocked operation had to have taken effect by, and the view opens on
//! them. Large histories stay usable: the page draws only the operations in
//! the current time window (zoom with the buttons, the mouse wheel or the
//! window fields; "jump to violation" returns to it).
//!
//! The data is embedded as one JSON object; the page's script draws it.

use consensus_actors::history::{
    History, LinearizabilityReport, ObservedOutput, OpId, Operation, Outcome, Verdict,
};
use consensus_actors::kv::KvCommand;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One operation as the page draws it: `[id, row, invoke_us, complete_us
/// (-1: unknown outcome), command, result, status]`; status 0 ok, 1 failed,
/// 2 unknown outcome.
type PageOp = (u64, usize, u64, i64, String, String, u8);

/// One key's part of the page.
#[derive(Serialize)]
struct PageKey {
    key: String,
    verdict: Verdict,
    detail: String,
    /// Client id per row.
    clients: Vec<u64>,
    ops: Vec<PageOp>,
    /// Linearizable: indexes into `ops` in linearization order.
    order: Option<Vec<usize>>,
    /// Not linearizable: the longest linearizable prefix found (indexes).
    prefix: Vec<usize>,
    /// Not linearizable: the operation that could not be placed.
    blocked: Option<usize>,
    /// Not linearizable: the other candidates at that point.
    unplaced: Vec<usize>,
}

#[derive(Serialize)]
struct Page<'a> {
    title: &'a str,
    verdict: Verdict,
    operations: usize,
    keys: Vec<PageKey>,
}

fn command_label(command: &KvCommand) -> String {
    match command {
        KvCommand::Put { value, .. } => format!("put {value}"),
        KvCommand::Get { .. } => "get".to_string(),
        KvCommand::Delete { .. } => "delete".to_string(),
        KvCommand::Cas { expected, new, .. } => {
            format!("cas {}→{new}", expected.as_deref().unwrap_or("nil"))
        }
        KvCommand::Noop => "noop".to_string(),
    }
}

fn value_label(value: &Option<String>) -> String {
    value.as_deref().unwrap_or("nil").to_string()
}

fn result_label(outcome: &Outcome) -> (String, u8, i64) {
    match outcome {
        Outcome::Ok {
            output,
            complete_us,
        } => {
            let text = match output {
                ObservedOutput::Ok => "ok".to_string(),
                ObservedOutput::Value(v) => format!("→ {}", value_label(v)),
                ObservedOutput::Deleted(existed) => {
                    if *existed {
                        "deleted".to_string()
                    } else {
                        "absent".to_string()
                    }
                }
                ObservedOutput::CasOk => "swapped".to_string(),
                ObservedOutput::CasFailed(v) => format!("failed, was {}", value_label(v)),
                ObservedOutput::CasFailedUnreported => "failed".to_string(),
            };
            (text, 0, i64::try_from(*complete_us).unwrap_or(i64::MAX))
        }
        Outcome::Fail { complete_us } => (
            "did not happen".to_string(),
            1,
            i64::try_from(*complete_us).unwrap_or(i64::MAX),
        ),
        Outcome::Unknown { .. } => ("unknown outcome".to_string(), 2, -1),
    }
}

/// The page for `history` checked as `report`, titled `title`.
pub fn history_html(history: &History, report: &LinearizabilityReport, title: &str) -> String {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in &history.operations {
        if let Some(key) = op.command.key() {
            by_key.entry(key).or_default().push(op);
        }
    }
    let reports: HashMap<&str, _> = report.per_key.iter().map(|k| (k.key.as_str(), k)).collect();
    let mut keys = Vec::with_capacity(by_key.len());
    for (key, mut ops) in by_key {
        ops.sort_by_key(|op| (op.invoke_us, op.id));
        let clients: Vec<u64> = ops
            .iter()
            .map(|op| op.client.0)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let row: HashMap<u64, usize> = clients.iter().enumerate().map(|(i, &c)| (c, i)).collect();
        let index: HashMap<OpId, usize> =
            ops.iter().enumerate().map(|(i, op)| (op.id, i)).collect();
        let indexes = |ids: &[OpId]| -> Vec<usize> {
            ids.iter().filter_map(|id| index.get(id).copied()).collect()
        };
        let page_ops: Vec<PageOp> = ops
            .iter()
            .map(|op| {
                let (result, status, complete) = result_label(&op.outcome);
                (
                    op.id.0,
                    row[&op.client.0],
                    op.invoke_us,
                    complete,
                    command_label(&op.command),
                    result,
                    status,
                )
            })
            .collect();
        let key_report = reports.get(key);
        let verdict = key_report.map_or(Verdict::Linearizable, |k| k.verdict);
        let explanation = key_report.and_then(|k| k.explanation.as_ref());
        let detail = match (key_report, explanation) {
            (_, Some(e)) => e.summary.clone(),
            (Some(k), None) if k.verdict == Verdict::Undecided => {
                k.undecided_reason().unwrap_or_default()
            }
            _ => String::new(),
        };
        keys.push(PageKey {
            key: key.to_string(),
            verdict,
            detail,
            clients,
            order: key_report
                .and_then(|k| k.linearization.as_deref())
                .map(indexes),
            prefix: explanation.map_or_else(Vec::new, |e| indexes(&e.longest_prefix)),
            blocked: explanation.and_then(|e| index.get(&e.blocked).copied()),
            unplaced: explanation.map_or_else(Vec::new, |e| {
                indexes(&e.candidates)
                    .into_iter()
                    .filter(|&i| Some(&ops[i].id) != Some(&e.blocked))
                    .collect()
            }),
            ops: page_ops,
        });
    }
    // Violations first, then undecided keys, then the rest, each in key order.
    keys.sort_by_key(|k| match k.verdict {
        Verdict::NotLinearizable => 0,
        Verdict::Undecided => 1,
        Verdict::Linearizable => 2,
    });
    let page = Page {
        title,
        verdict: report.verdict,
        operations: history.operations.len(),
        keys,
    };
    // Inside <script>, "</" could end the element: escape it (JSON allows
    // "\/" for "/").
    let data = serde_json::to_string(&page)
        .expect("the page data always encodes as JSON")
        .replace("</", "<\\/");
    let mut out = String::with_capacity(data.len() + TEMPLATE.len() + 256);
    let (head, tail) = TEMPLATE
        .split_once("/*DATA*/")
        .expect("the template has a data slot");
    out.push_str(&head.replace("<!--TITLE-->", &escape_html(title)));
    out.push_str(&data);
    out.push_str(tail);
    out
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const TEMPLATE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>history: <!--TITLE--></title>
<style>
body { font: 13px system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 18px 0 4px; }
.verdict-linearizable { color: #17803d; }
.verdict-not_linearizable { color: #c0262d; }
.verdict-undecided { color: #a86500; }
.detail { margin: 2px 0 6px; max-width: 100em; }
.controls { margin: 4px 0; display: flex; gap: 6px; align-items: center; flex-wrap: wrap; }
.controls input { width: 9em; }
.timeline { position: relative; border: 1px solid #ccc; background: #fafafa; overflow: hidden; }
.row { position: relative; height: 22px; border-bottom: 1px solid #eee; }
.client { position: absolute; left: 0; width: 76px; height: 22px; line-height: 22px; padding-left: 4px;
  background: #f0f0f0; border-right: 1px solid #ccc; font-size: 11px; z-index: 2; overflow: hidden; }
.lane { position: absolute; left: 82px; right: 4px; top: 0; bottom: 0; }
.op { position: absolute; top: 3px; height: 16px; line-height: 16px; font-size: 11px; white-space: nowrap;
  overflow: hidden; background: #cfe0f7; border: 1px solid #7fa4d6; border-radius: 3px; padding: 0 2px;
  box-sizing: border-box; cursor: pointer; min-width: 2px; }
.op.failed { background: #eee; border-color: #bbb; color: #888; }
.op.unknown { background: linear-gradient(to right, #f4e3b5, rgba(244,227,181,0.15)); border-color: #d2b15e;
  border-right: none; border-radius: 3px 0 0 3px; }
.op.prefix { background: #c8ecd2; border-color: #4fa86a; }
.op.unplaced { background: #ffd9a8; border-color: #e08a1e; }
.op.blocked { background: #ffb3b3; border-color: #c0262d; border-width: 2px; font-weight: bold; }
.op.prefix.unknown { background: linear-gradient(to right, #c8ecd2, rgba(200,236,210,0.15)); }
.op.unplaced.unknown { background: linear-gradient(to right, #ffd9a8, rgba(255,217,168,0.15)); }
.op.selected { outline: 2px solid #222; }
.badge { display: inline-block; background: #222; color: #fff; border-radius: 6px; padding: 0 3px;
  margin-right: 3px; font-size: 10px; line-height: 12px; }
.violation-marker { position: absolute; top: 0; bottom: 0; width: 0; border-left: 2px dashed #c0262d; z-index: 3;
  pointer-events: none; }
.violation-marker span { position: absolute; top: 0; left: 3px; color: #c0262d; font-size: 10px; white-space: nowrap;
  background: rgba(255,255,255,0.8); }
.axis { position: relative; height: 16px; margin-left: 82px; margin-right: 4px; font-size: 10px; color: #666; }
.axis span { position: absolute; transform: translateX(-50%); white-space: nowrap; }
.info { min-height: 1.5em; margin: 4px 0; font-family: ui-monospace, monospace; font-size: 12px; }
.legend span { display: inline-block; padding: 0 6px; margin-right: 6px; border: 1px solid #999; border-radius: 3px; font-size: 11px; }
.note { color: #a86500; }
</style>
</head>
<body>
<h1 id="title"></h1>
<div id="summary"></div>
<div class="legend"><span style="background:#cfe0f7">ok</span><span style="background:#eee">failed</span><span style="background:#f4e3b5">unknown outcome (open-ended)</span><span style="background:#c8ecd2">linearizable prefix</span><span style="background:#ffd9a8">could not be placed</span><span style="background:#ffb3b3">blocked</span></div>
<div id="keys"></div>
<script id="data" type="application/json">/*DATA*/</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const MAX_BARS = 4000;
const WORDS = { linearizable: "linearizable", not_linearizable: "not linearizable", undecided: "undecided" };
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function fmt(us) {
  if (us >= 1e6) return (us / 1e6).toFixed(3) + " s";
  if (us >= 1e3) return (us / 1e3).toFixed(1) + " ms";
  return us + " µs";
}
document.getElementById("title").textContent = DATA.title;
document.getElementById("summary").innerHTML = "";
const sum = document.getElementById("summary");
sum.appendChild(el("span", "verdict-" + DATA.verdict, WORDS[DATA.verdict]));
sum.appendChild(document.createTextNode(" · " + DATA.operations + " operations · " + DATA.keys.length + " keys"));

function drawKey(k, keyIndex) {
  const sec = el("section", "key verdict-section-" + k.verdict);
  sec.dataset.key = k.key;
  const h = el("h2");
  h.appendChild(document.createTextNode("key " + JSON.stringify(k.key) + ": "));
  h.appendChild(el("span", "verdict verdict-" + k.verdict, WORDS[k.verdict]));
  h.appendChild(document.createTextNode(" (" + k.ops.length + " operations, " + k.clients.length + " clients)"));
  sec.appendChild(h);
  if (k.detail) sec.appendChild(el("p", "detail", k.detail));
  let tMin = Infinity, tMax = -Infinity;
  for (const o of k.ops) {
    tMin = Math.min(tMin, o[2]);
    tMax = Math.max(tMax, o[3] >= 0 ? o[3] : o[2]);
  }
  if (!isFinite(tMin)) { tMin = 0; tMax = 1; }
  const end = tMax + Math.max(1, (tMax - tMin) * 0.02);
  // Per operation: its place in the order shown (linearization or prefix).
  const place = new Map();
  (k.order || k.prefix).forEach((op, i) => place.set(op, i + 1));
  const unplaced = new Set(k.unplaced);
  // The window the view opens on.
  let focus = null;
  if (k.blocked !== null && k.blocked !== undefined) {
    const b = k.ops[k.blocked];
    let lo = b[2], hi = b[3] >= 0 ? b[3] : b[2];
    for (const i of k.unplaced) lo = Math.min(lo, k.ops[i][2]);
    if (k.prefix.length) {
      const last = k.ops[k.prefix[k.prefix.length - 1]];
      lo = Math.min(lo, last[2]);
    }
    const pad = Math.max(10, (hi - lo) * 0.25);
    focus = [Math.max(tMin, lo - pad), Math.min(end, hi + pad)];
  }
  let view = focus ? focus.slice() : [tMin, Math.min(end, tMin + (k.ops.length > 300 ? (end - tMin) * 300 / k.ops.length : end - tMin))];
  const controls = el("div", "controls");
  const zin = el("button", "zoom-in", "zoom in");
  const zout = el("button", "zoom-out", "zoom out");
  const left = el("button", "pan-left", "◀");
  const right = el("button", "pan-right", "▶");
  const all = el("button", "show-all", "whole history");
  const from = el("input", "from"); from.type = "number";
  const to = el("input", "to"); to.type = "number";
  controls.append(zin, zout, left, right, all);
  let jump = null;
  if (focus) { jump = el("button", "jump", "jump to violation"); controls.appendChild(jump); }
  controls.append(el("span", "", "window (µs):"), from, to);
  const note = el("span", "note");
  controls.appendChild(note);
  sec.appendChild(controls);
  const axis = el("div", "axis");
  sec.appendChild(axis);
  const tl = el("div", "timeline");
  sec.appendChild(tl);
  const info = el("div", "info");
  sec.appendChild(info);
  const lanes = k.clients.map(c => {
    const row = el("div", "row");
    row.dataset.client = c;
    row.appendChild(el("div", "client", "client " + c));
    const lane = el("div", "lane");
    row.appendChild(lane);
    tl.appendChild(row);
    return lane;
  });
  let numbered = false;
  function describe(i) {
    const o = k.ops[i];
    let s = "op" + o[0] + " client " + k.clients[o[1]] + ": " + o[4] + " " + o[5] + " [" + fmt(o[2]) + ", " + (o[3] >= 0 ? fmt(o[3]) : "∞") + ")";
    if (place.has(i)) s += k.order ? " · #" + place.get(i) + " of " + k.order.length + " in the linearization" : " · #" + place.get(i) + " in the longest linearizable prefix";
    if (i === k.blocked) s += " · could not be placed: it had to take effect before it returned";
    if (unplaced.has(i)) s += " · a candidate at the dead end";
    return s;
  }
  function draw() {
    for (const lane of lanes) lane.textContent = "";
    for (const m of tl.querySelectorAll(".violation-marker")) m.remove();
    const [a, b] = view;
    const span = Math.max(1, b - a);
    from.value = Math.round(a); to.value = Math.round(b);
    axis.textContent = "";
    for (let t = 0; t <= 4; t++) {
      const s = el("span", "", fmt(Math.round(a + span * t / 4)));
      s.style.left = (t * 25) + "%";
      axis.appendChild(s);
    }
    let drawn = 0, inWindow = 0;
    for (let i = 0; i < k.ops.length; i++) {
      const o = k.ops[i];
      const oEnd = o[3] >= 0 ? o[3] : end;
      if (o[2] > b || oEnd < a) continue;
      inWindow++;
      if (drawn >= MAX_BARS) continue;
      drawn++;
      const bar = el("div", "op");
      if (o[6] === 1) bar.classList.add("failed");
      if (o[6] === 2) bar.classList.add("unknown");
      if (!k.order && place.has(i)) bar.classList.add("prefix");
      if (unplaced.has(i)) bar.classList.add("unplaced");
      if (i === k.blocked) bar.classList.add("blocked");
      bar.dataset.op = o[0];
      const l = Math.max(0, (o[2] - a) / span * 100);
      const r = Math.min(100, (oEnd - a) / span * 100);
      bar.style.left = l + "%";
      bar.style.width = Math.max(0.1, r - l) + "%";
      if ((numbered || !k.order) && place.has(i)) bar.appendChild(el("span", "badge", String(place.get(i))));
      bar.appendChild(document.createTextNode(o[4] + " " + o[5]));
      bar.title = describe(i);
      bar.addEventListener("click", () => {
        numbered = !!k.order;
        info.textContent = describe(i);
        draw();
        const again = tl.querySelector('.op[data-op="' + o[0] + '"]');
        if (again) again.classList.add("selected");
      });
      lanes[o[1]].appendChild(bar);
    }
    note.textContent = drawn < inWindow ? "showing " + drawn + " of " + inWindow + " operations in this window: zoom in" : inWindow + " operations in this window";
    if (k.blocked !== null && k.blocked !== undefined) {
      const bo = k.ops[k.blocked];
      const t = bo[3] >= 0 ? bo[3] : bo[2];
      if (t >= a && t <= b) {
        const m = el("div", "violation-marker");
        m.id = "violation-" + keyIndex;
        m.style.left = "calc(82px + (100% - 86px) * " + ((t - a) / span) + ")";
        m.appendChild(el("span", "", "op" + bo[0] + " returned here without a place"));
        tl.appendChild(m);
      }
    }
  }
  function zoom(f, centre) {
    const [a, b] = view;
    const c = centre === undefined ? (a + b) / 2 : centre;
    view = [Math.max(tMin, c - (c - a) * f), Math.min(end, c + (b - c) * f)];
    if (view[1] - view[0] < 2) view = [c - 1, c + 1];
    draw();
  }
  function pan(f) {
    const w = view[1] - view[0];
    let a = Math.min(Math.max(tMin, view[0] + w * f), end - w);
    view = [a, a + w];
    draw();
  }
  zin.onclick = () => zoom(0.5);
  zout.onclick = () => zoom(2);
  left.onclick = () => pan(-0.5);
  right.onclick = () => pan(0.5);
  all.onclick = () => { view = [tMin, end]; draw(); };
  if (jump) jump.onclick = () => { view = focus.slice(); draw(); };
  from.onchange = to.onchange = () => {
    const a = Number(from.value), b = Number(to.value);
    if (isFinite(a) && isFinite(b) && b > a) { view = [a, b]; draw(); }
  };
  tl.addEventListener("wheel", ev => {
    ev.preventDefault();
    const rect = tl.getBoundingClientRect();
    const x = (ev.clientX - rect.left - 82) / Math.max(1, rect.width - 86);
    zoom(ev.deltaY < 0 ? 0.8 : 1.25, view[0] + (view[1] - view[0]) * Math.min(1, Math.max(0, x)));
  }, { passive: false });
  draw();
  return sec;
}
const keysDiv = document.getElementById("keys");
DATA.keys.forEach((k, i) => keysDiv.appendChild(drawKey(k, i)));
const first = document.querySelector(".violation-marker, .op.blocked");
if (first && first.scrollIntoView) first.closest("section").scrollIntoView();
document.body.dataset.rendered = "yes";
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_actors::history::{check_history, HistoryRecorder};
    use consensus_actors::kv::KvOutput;
    use consensus_actors::ClientId;

    /// A stale read: write 1, then a read that starts after it returned and
    /// sees nothing.
    pub(crate) fn stale_read() -> History {
        let mut rec = HistoryRecorder::new();
        let w = rec.invoke(ClientId(1), KvCommand::put("x", "1"), 0);
        rec.ok(w, KvOutput::Ok, 10).unwrap();
        let r = rec.invoke(ClientId(2), KvCommand::get("x"), 20);
        rec.ok(r, KvOutput::Value(None), 30).unwrap();
        let u = rec.invoke(ClientId(3), KvCommand::put("y", "</script>"), 5);
        rec.unknown(u, 8).unwrap();
        rec.into_history()
    }

    #[test]
    fn page_embeds_the_data_and_escapes_it() {
        let h = stale_read();
        let report = check_history(&h);
        let page = history_html(&h, &report, "a <test>");
        assert!(page.contains("history: a &lt;test&gt;"));
        // The value "</script>" must not end the data element.
        assert_eq!(page.matches("</script>").count(), 2, "{page}");
        let data = page
            .split("<script id=\"data\" type=\"application/json\">")
            .nth(1)
            .and_then(|rest| rest.split("</script>").next())
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(value["verdict"], "not_linearizable");
        let keys = value["keys"].as_array().unwrap();
        // The violation comes first.
        assert_eq!(keys[0]["key"], "x");
        assert_eq!(keys[0]["blocked"], 1);
        assert_eq!(keys[0]["prefix"], serde_json::json!([0]));
        assert_eq!(keys[1]["key"], "y");
        assert_eq!(keys[1]["ops"][0][3], -1);
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
