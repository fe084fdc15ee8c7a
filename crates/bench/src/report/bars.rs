//! The latency distribution as a bar chart: one bar per log-spaced bin of durations
//! (a log axis in ms, since the p99 sits a decade or two above the median), the number
//! of requests up, and the overall percentiles as vertical lines. Same frame, title and
//! sizing as the line charts (see `svg`).

use super::format::esc;
use super::svg::{
    axis_names, fmt_tick, legend_layout, nice_step, no_data, open, x_tick, y_grid, Frame, Scale,
    ML, PALETTE, PH, PW,
};
use crate::recorder::LatencyBin;
use std::fmt::Write as _;

/// A bar chart of a latency distribution.
pub(super) struct Bars<'a> {
    pub(super) id: &'a str,
    pub(super) title: &'a str,
    pub(super) bins: &'a [LatencyBin],
    /// Vertical marks: where (ms) and a label ("p99 1.25 ms").
    pub(super) marks: Vec<(f64, String)>,
}

/// The log axis: decades from `lo` to `hi` (exponents), mapped onto the plot's width.
struct LogAxis {
    lo: f64,
    hi: f64,
}

impl LogAxis {
    fn x(&self, ms: f64) -> f64 {
        let v = ms.max(1e-12).log10();
        ML + ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0) * PW
    }
}

impl Bars<'_> {
    /// The chart as an `<svg>` element.
    pub(super) fn svg(&self) -> String {
        let (_, top) = legend_layout(&[]);
        let mut o = String::new();
        open(&mut o, self.id, self.title, top + PH + super::svg::MB);
        let (Some(first), Some(last)) = (self.bins.first(), self.bins.last()) else {
            no_data(&mut o, top);
            return o;
        };
        let axis = LogAxis {
            lo: first.lo_ms.log10().floor(),
            hi: last
                .hi_ms
                .log10()
                .ceil()
                .max(first.lo_ms.log10().floor() + 1.0),
        };
        let most = self.bins.iter().map(|b| b.count).max().unwrap_or(0) as f64;
        let step = nice_step(most.max(1.0) * 1.05);
        let y_top = ((most.max(1.0) * 1.05) / step).ceil() * step;
        let frame = Frame {
            top,
            x_max: 1.0,
            y_lo: 0.0,
            y_hi: y_top,
            scale: Scale::Linear,
        };
        let ticks: Vec<f64> = (0..=((y_top / step).round() as i64))
            .map(|i| i as f64 * step)
            .collect();
        y_grid(&mut o, &frame, &ticks);
        for e in axis.lo as i32..=axis.hi as i32 {
            let ms = 10f64.powi(e);
            x_tick(&mut o, axis.x(ms), frame.bottom(), &fmt_tick(ms));
        }
        axis_names(&mut o, &frame, "duration, ms (log scale)", "requests");
        self.bars(&mut o, &frame, &axis);
        self.marks(&mut o, &frame, &axis);
        o.push_str("</svg>");
        o
    }

    /// One `<rect class="bar">` a non-empty bin.
    fn bars(&self, o: &mut String, frame: &Frame, axis: &LogAxis) {
        for b in self.bins.iter().filter(|b| b.count > 0) {
            let (x0, x1) = (axis.x(b.lo_ms), axis.x(b.hi_ms));
            let y = frame.y(b.count as f64);
            let _ = write!(
                o,
                r#"<rect class="bar" x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} requests from {} to {} ms</title></rect>"#,
                (x1 - x0 - 1.0).max(1.0),
                frame.bottom() - y,
                PALETTE[0],
                b.count,
                fmt_tick(b.lo_ms),
                fmt_tick(b.hi_ms)
            );
        }
    }

    /// The marks, each a line with its label at the top, on rows of their own.
    fn marks(&self, o: &mut String, frame: &Frame, axis: &LogAxis) {
        for (i, (ms, label)) in self.marks.iter().enumerate() {
            let px = axis.x(*ms);
            let color = PALETTE[(i + 1) % PALETTE.len()];
            let ly = frame.top + 12.0 + i as f64 * 12.0;
            let _ = write!(
                o,
                r#"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="{color}" stroke-width="1.5" stroke-dasharray="5 3"/><text x="{:.1}" y="{ly:.1}" fill="{color}">{}</text>"#,
                frame.top,
                frame.bottom(),
                px + 3.0,
                esc(label)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::latency_bins;

    #[test]
    fn bars_and_marks() {
        let bins = latency_bins(&[0.2, 0.21, 0.3, 1.0, 12.0]);
        let b = Bars {
            id: "latency-distribution",
            title: "Latency <distribution>",
            bins: &bins,
            marks: vec![(0.3, "p50 0.3 ms".into()), (11.6, "p99 11.6 ms".into())],
        };
        let svg = b.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches(r#"<rect class="bar""#).count(), 4);
        assert!(svg.contains("Latency &lt;distribution&gt;") && svg.contains("p99 11.6 ms"));
        let empty = Bars { bins: &[], ..b };
        assert!(empty.svg().contains(r#"class="nodata""#));
    }
}
