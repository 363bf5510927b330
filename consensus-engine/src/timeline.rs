//! What a simulation looked like over virtual time, and its picture
//! (`consensus simulate --report FILE.svg`): committed operations per
//! second, which node led in each term, and the fault windows shaded.
//!
//! The SVG is written by hand as text (no plotting dependency).

use crate::observer::{LeaderEvent, LeaderEventKind};
use consensus_actors::sim::{FaultAction, FaultEvent};
use consensus_actors::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A stretch of time during which one node was leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderSpan {
    /// The leader.
    pub node: NodeId,
    /// Its epoch (term).
    pub epoch: u64,
    /// Start, virtual microseconds.
    pub from_us: u64,
    /// End, virtual microseconds.
    pub to_us: u64,
}

/// The kinds of fault window, one row each in the picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultRow {
    /// A node is down.
    Crash,
    /// The network is partitioned or links are cut.
    Network,
    /// Messages are lost, duplicated or reordered.
    Rates,
    /// A component was made to panic (an instant).
    Panic,
}

impl FaultRow {
    fn label(self) -> &'static str {
        match self {
            FaultRow::Crash => "crash",
            FaultRow::Network => "partition",
            FaultRow::Rates => "loss/dup/reorder",
            FaultRow::Panic => "panic",
        }
    }

    fn color(self) -> &'static str {
        match self {
            FaultRow::Crash => "#d62728",
            FaultRow::Network => "#ff7f0e",
            FaultRow::Rates => "#1f77b4",
            FaultRow::Panic => "#9467bd",
        }
    }

    const ALL: [FaultRow; 4] = [
        FaultRow::Crash,
        FaultRow::Network,
        FaultRow::Rates,
        FaultRow::Panic,
    ];
}

/// A stretch of time during which a fault was in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// Which kind.
    pub row: FaultRow,
    /// What it was ("crash n2", "partition n1,n2 | n3,n4,n5", ...).
    pub label: String,
    /// Start, virtual microseconds.
    pub from_us: u64,
    /// End, virtual microseconds (equal to `from_us` for an instant).
    pub to_us: u64,
}

/// A run over time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// Nodes in the cluster (ids `1..=nodes`, plus any added later).
    pub nodes: usize,
    /// End of the run, virtual microseconds.
    pub end_us: u64,
    /// When the faults stopped and the cluster was healed.
    pub recovered_at_us: u64,
    /// Acknowledged operations in each second of virtual time.
    pub ok_per_second: Vec<u64>,
    /// Leaderships, in start order.
    pub leaders: Vec<LeaderSpan>,
    /// Fault windows, in start order.
    pub faults: Vec<FaultWindow>,
}

fn us(d: tokio::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn percent(p: f64) -> String {
    format!("{:.1}%", p * 100.0)
}

impl Timeline {
    /// Builds the timeline of a run from what it recorded.
    pub fn build(
        nodes: usize,
        end_us: u64,
        recovered_at_us: u64,
        ok_per_second: &[u64],
        leadership: &[LeaderEvent],
        fault_events: &[FaultEvent],
    ) -> Self {
        Self {
            nodes,
            end_us,
            recovered_at_us,
            ok_per_second: ok_per_second.to_vec(),
            leaders: leader_spans(leadership, end_us),
            faults: fault_windows(fault_events, recovered_at_us),
        }
    }

    /// The nodes that appear in the leader lanes, sorted.
    fn lanes(&self) -> Vec<NodeId> {
        let mut lanes: Vec<NodeId> = (1..=self.nodes as u64).map(NodeId).collect();
        for span in &self.leaders {
            if !lanes.contains(&span.node) {
                lanes.push(span.node);
            }
        }
        lanes.sort_unstable();
        lanes
    }

    /// The picture of the run as an SVG document titled `title`.
    pub fn to_svg(&self, title: &str) -> String {
        const WIDTH: f64 = 1000.0;
        const LEFT: f64 = 130.0;
        const RIGHT: f64 = 20.0;
        const CHART_TOP: f64 = 50.0;
        const CHART_HEIGHT: f64 = 160.0;
        const LANE: f64 = 18.0;
        let plot_width = WIDTH - LEFT - RIGHT;
        let end_us = self.end_us.max(1);
        let x = |t_us: u64| LEFT + plot_width * (t_us.min(end_us) as f64 / end_us as f64);
        let lanes = self.lanes();
        let leaders_top = CHART_TOP + CHART_HEIGHT + 40.0;
        let faults_top = leaders_top + LANE * lanes.len() as f64 + 30.0;
        let axis_y = faults_top + LANE * FaultRow::ALL.len() as f64 + 10.0;
        let height = axis_y + 60.0;

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
            escape(title)
        );

        // Fault windows shaded across every panel.
        for w in &self.faults {
            if w.row == FaultRow::Panic {
                continue;
            }
            let (x0, x1) = (x(w.from_us), x(w.to_us));
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{CHART_TOP}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.08"><title>{}</title></rect>"#,
                (x1 - x0).max(1.0),
                axis_y - CHART_TOP,
                w.row.color(),
                escape(&w.label)
            );
        }

        // Committed operations per second.
        let max_ops = self.ok_per_second.iter().copied().max().unwrap_or(0).max(1);
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.0}">committed ops/s</text>"#,
            CHART_TOP + CHART_HEIGHT / 2.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.0}" y="{:.0}" text-anchor="end" fill="#555">{max_ops}</text>"##,
            LEFT - 6.0,
            CHART_TOP + 10.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.0}" y="{:.0}" text-anchor="end" fill="#555">0</text>"##,
            LEFT - 6.0,
            CHART_TOP + CHART_HEIGHT
        );
        for (second, &ops) in self.ok_per_second.iter().enumerate() {
            let from = second as u64 * 1_000_000;
            if from >= end_us {
                break;
            }
            let (x0, x1) = (x(from), x(from + 1_000_000));
            let h = CHART_HEIGHT * ops as f64 / max_ops as f64;
            let _ = writeln!(
                s,
                r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#2ca02c"><title>{second}-{} s: {ops} ops</title></rect>"##,
                CHART_TOP + CHART_HEIGHT - h,
                (x1 - x0 - 0.5).max(0.5),
                second + 1
            );
        }
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
            CHART_TOP + CHART_HEIGHT,
            LEFT + plot_width,
            CHART_TOP + CHART_HEIGHT
        );

        // Leader lanes.
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.0}" font-weight="bold">leader</text>"#,
            leaders_top - 8.0
        );
        for (i, node) in lanes.iter().enumerate() {
            let y = leaders_top + LANE * i as f64;
            let _ = writeln!(
                s,
                r##"<text x="{:.0}" y="{:.1}" text-anchor="end">{node}</text><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
                LEFT - 6.0,
                y + 13.0,
                y + LANE / 2.0,
                LEFT + plot_width,
                y + LANE / 2.0
            );
        }
        for span in &self.leaders {
            let Some(i) = lanes.iter().position(|&n| n == span.node) else {
                continue;
            };
            let y = leaders_top + LANE * i as f64 + 2.0;
            let (x0, x1) = (x(span.from_us), x(span.to_us));
            let w = (x1 - x0).max(1.0);
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{} leads term {} from {:.3} s to {:.3} s</title></rect>"#,
                LANE - 4.0,
                node_color(span.node),
                span.node,
                span.epoch,
                span.from_us as f64 / 1e6,
                span.to_us as f64 / 1e6
            );
            if w > 28.0 {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" fill="white" font-size="10">t{}</text>"#,
                    x0 + 3.0,
                    y + 10.5,
                    span.epoch
                );
            }
        }

        // Fault rows.
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.0}" font-weight="bold">faults</text>"#,
            faults_top - 8.0
        );
        for (i, row) in FaultRow::ALL.iter().enumerate() {
            let y = faults_top + LANE * i as f64;
            let _ = writeln!(
                s,
                r#"<text x="{:.0}" y="{:.1}" text-anchor="end" fill="{}">{}</text>"#,
                LEFT - 6.0,
                y + 13.0,
                row.color(),
                row.label()
            );
        }
        for w in &self.faults {
            let i = FaultRow::ALL.iter().position(|&r| r == w.row).unwrap_or(0);
            let y = faults_top + LANE * i as f64 + 3.0;
            let (x0, x1) = (x(w.from_us), x(w.to_us));
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.6"><title>{} ({:.3} s to {:.3} s)</title></rect>"#,
                (x1 - x0).max(1.5),
                LANE - 6.0,
                w.row.color(),
                escape(&w.label),
                w.from_us as f64 / 1e6,
                w.to_us as f64 / 1e6
            );
        }

        // Time axis.
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}" stroke="#333"/>"##,
            LEFT + plot_width
        );
        let end_s = end_us as f64 / 1e6;
        let step = tick_step(end_s);
        let mut t = 0.0;
        while t <= end_s + 1e-9 {
            let px = x((t * 1e6) as u64);
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{axis_y:.1}" x2="{px:.1}" y2="{:.1}" stroke="#333"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                axis_y + 5.0,
                axis_y + 18.0,
                trim_float(t)
            );
            t += step;
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.0}" y="{:.1}" text-anchor="middle">virtual time (s)</text>"#,
            LEFT + plot_width / 2.0,
            axis_y + 36.0
        );
        if self.recovered_at_us < self.end_us {
            let px = x(self.recovered_at_us);
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{CHART_TOP}" x2="{px:.1}" y2="{axis_y:.1}" stroke="#000" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.0}" font-size="10">healed</text>"##,
                px + 3.0,
                CHART_TOP + 10.0
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn leader_spans(events: &[LeaderEvent], end_us: u64) -> Vec<LeaderSpan> {
    let mut open: BTreeMap<NodeId, (u64, u64)> = BTreeMap::new();
    let mut spans = Vec::new();
    for ev in events {
        match ev.kind {
            LeaderEventKind::Elected => {
                if let Some((epoch, from)) = open.insert(ev.node, (ev.epoch, ev.at_us)) {
                    spans.push(LeaderSpan {
                        node: ev.node,
                        epoch,
                        from_us: from,
                        to_us: ev.at_us,
                    });
                }
            }
            LeaderEventKind::SteppedDown | LeaderEventKind::Crashed => {
                if let Some((epoch, from)) = open.remove(&ev.node) {
                    spans.push(LeaderSpan {
                        node: ev.node,
                        epoch,
                        from_us: from,
                        to_us: ev.at_us,
                    });
                }
            }
            LeaderEventKind::Started => {}
        }
    }
    for (node, (epoch, from)) in open {
        spans.push(LeaderSpan {
            node,
            epoch,
            from_us: from,
            to_us: end_us.max(from),
        });
    }
    spans.sort_by_key(|s| (s.from_us, s.node));
    spans
}

fn fault_windows(events: &[FaultEvent], recovered_at_us: u64) -> Vec<FaultWindow> {
    let mut windows = Vec::new();
    let mut crashed: BTreeMap<NodeId, u64> = BTreeMap::new();
    let mut network: Vec<(String, u64)> = Vec::new();
    let mut partition: Option<(String, u64)> = None;
    let mut rates: Option<(String, u64)> = None;
    let close = |windows: &mut Vec<FaultWindow>, row, label: String, from: u64, to: u64| {
        windows.push(FaultWindow {
            row,
            label,
            from_us: from,
            to_us: to.max(from),
        });
    };
    for ev in events {
        let at = us(ev.at);
        match &ev.action {
            FaultAction::Crash(n) => {
                crashed.entry(*n).or_insert(at);
            }
            FaultAction::Restart(n) => {
                if let Some(from) = crashed.remove(n) {
                    close(
                        &mut windows,
                        FaultRow::Crash,
                        format!("crash {n}"),
                        from,
                        at,
                    );
                }
            }
            FaultAction::Partition(groups) => {
                if let Some((label, from)) = partition.take() {
                    close(&mut windows, FaultRow::Network, label, from, at);
                }
                let groups: Vec<String> = groups
                    .iter()
                    .map(|g| {
                        g.iter()
                            .map(|n| n.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect();
                partition = Some((format!("partition {}", groups.join(" | ")), at));
            }
            FaultAction::BlockLink { from, to } => {
                network.push((format!("cut link {from} -> {to}"), at));
            }
            FaultAction::Isolate(n) => network.push((format!("isolate {n}"), at)),
            FaultAction::Heal => {
                if let Some((label, from)) = partition.take() {
                    close(&mut windows, FaultRow::Network, label, from, at);
                }
                for (label, from) in network.drain(..) {
                    close(&mut windows, FaultRow::Network, label, from, at);
                }
            }
            FaultAction::SetFaults(f) => {
                if let Some((label, from)) = rates.take() {
                    close(&mut windows, FaultRow::Rates, label, from, at);
                }
                if f.loss > 0.0 || f.duplicate > 0.0 || f.reorder > 0.0 {
                    rates = Some((
                        format!(
                            "loss {} dup {} reorder {} jitter {} ms",
                            percent(f.loss),
                            percent(f.duplicate),
                            percent(f.reorder),
                            f.jitter.as_millis()
                        ),
                        at,
                    ));
                }
            }
            FaultAction::Panic(n) => close(
                &mut windows,
                FaultRow::Panic,
                format!("panic in {n}"),
                at,
                at,
            ),
            FaultAction::DiskFailure { node, outcome } => close(
                &mut windows,
                FaultRow::Panic,
                format!("disk of {node} fails a sync ({outcome:?})"),
                at,
                at,
            ),
            // A scenario heals the network, then cuts its own links.
            FaultAction::Connectivity { scenario, .. } => {
                if let Some((label, from)) = partition.take() {
                    close(&mut windows, FaultRow::Network, label, from, at);
                }
                for (label, from) in network.drain(..) {
                    close(&mut windows, FaultRow::Network, label, from, at);
                }
                network.push((scenario.to_string(), at));
            }
        }
    }
    for (n, from) in crashed {
        close(
            &mut windows,
            FaultRow::Crash,
            format!("crash {n}"),
            from,
            recovered_at_us,
        );
    }
    if let Some((label, from)) = partition {
        close(
            &mut windows,
            FaultRow::Network,
            label,
            from,
            recovered_at_us,
        );
    }
    for (label, from) in network {
        close(
            &mut windows,
            FaultRow::Network,
            label,
            from,
            recovered_at_us,
        );
    }
    if let Some((label, from)) = rates {
        close(&mut windows, FaultRow::Rates, label, from, recovered_at_us);
    }
    windows.sort_by_key(|w| (w.from_us, w.row));
    windows
}

fn node_color(node: NodeId) -> &'static str {
    const PALETTE: [&str; 8] = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    ];
    PALETTE[(node.get() as usize + PALETTE.len() - 1) % PALETTE.len()]
}

fn tick_step(end_s: f64) -> f64 {
    for step in [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ] {
        if end_s / step <= 12.0 {
            return step;
        }
    }
    3600.0
}

fn trim_float(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_actors::sim::NetworkFaults;
    use tokio::time::Duration;

    fn ev(at_ms: u64, action: FaultAction) -> FaultEvent {
        FaultEvent {
            at: Duration::from_millis(at_ms),
            action,
        }
    }

    fn lead(at_us: u64, node: u64, epoch: u64, kind: LeaderEventKind) -> LeaderEvent {
        LeaderEvent {
            at_us,
            node: NodeId(node),
            epoch,
            kind,
        }
    }

    #[test]
    fn leader_spans_end_at_step_down_crash_reelection_or_the_end() {
        let events = [
            lead(100, 1, 1, LeaderEventKind::Elected),
            lead(500, 1, 0, LeaderEventKind::Crashed),
            lead(700, 2, 2, LeaderEventKind::Elected),
            lead(900, 2, 3, LeaderEventKind::Elected),
            lead(950, 3, 0, LeaderEventKind::Started),
        ];
        let spans = leader_spans(&events, 1000);
        assert_eq!(
            spans,
            vec![
                LeaderSpan {
                    node: NodeId(1),
                    epoch: 1,
                    from_us: 100,
                    to_us: 500
                },
                LeaderSpan {
                    node: NodeId(2),
                    epoch: 2,
                    from_us: 700,
                    to_us: 900
                },
                LeaderSpan {
                    node: NodeId(2),
                    epoch: 3,
                    from_us: 900,
                    to_us: 1000
                },
            ]
        );
    }

    #[test]
    fn fault_windows_open_and_close() {
        let lossy = NetworkFaults {
            loss: 0.05,
            ..NetworkFaults::none()
        };
        let events = [
            ev(1, FaultAction::Crash(NodeId(2))),
            ev(
                2,
                FaultAction::Partition(vec![vec![NodeId(1)], vec![NodeId(3)]]),
            ),
            ev(3, FaultAction::SetFaults(lossy)),
            ev(4, FaultAction::Restart(NodeId(2))),
            ev(5, FaultAction::Heal),
            ev(6, FaultAction::Panic(NodeId(3))),
            ev(7, FaultAction::SetFaults(NetworkFaults::none())),
            ev(8, FaultAction::Isolate(NodeId(1))),
        ];
        let windows = fault_windows(&events, 10_000);
        let summary: Vec<(FaultRow, &str, u64, u64)> = windows
            .iter()
            .map(|w| (w.row, w.label.as_str(), w.from_us, w.to_us))
            .collect();
        assert_eq!(
            summary,
            vec![
                (FaultRow::Crash, "crash n2", 1000, 4000),
                (FaultRow::Network, "partition n1 | n3", 2000, 5000),
                (
                    FaultRow::Rates,
                    "loss 5.0% dup 0.0% reorder 0.0% jitter 0 ms",
                    3000,
                    7000
                ),
                (FaultRow::Panic, "panic in n3", 6000, 6000),
                (FaultRow::Network, "isolate n1", 8000, 10_000),
            ]
        );
    }

    #[test]
    fn svg_has_every_panel_and_escapes_text() {
        let t = Timeline {
            nodes: 3,
            end_us: 3_000_000,
            recovered_at_us: 2_000_000,
            ok_per_second: vec![10, 0, 5],
            leaders: vec![LeaderSpan {
                node: NodeId(2),
                epoch: 4,
                from_us: 0,
                to_us: 3_000_000,
            }],
            faults: vec![FaultWindow {
                row: FaultRow::Crash,
                label: "crash n1".into(),
                from_us: 500_000,
                to_us: 1_500_000,
            }],
        };
        let svg = t.to_svg("raft <seed 1>");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("raft &lt;seed 1&gt;"));
        assert!(svg.contains("committed ops/s"));
        assert!(svg.contains("n2 leads term 4"));
        assert!(svg.contains("crash n1 (0.500 s to 1.500 s)"));
        assert!(svg.contains("healed"));
        assert_eq!(svg.matches("<title>0-1 s: 10 ops</title>").count(), 1);
    }
}
