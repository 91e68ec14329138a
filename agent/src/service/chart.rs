//! Small bar charts as inline SVG for the status page: one bar per run, oldest
//! on the left, the newest at the right edge, coloured by the run's outcome
//! (the page's stylesheet says how), each with its value as a tooltip. Plain
//! markup: no script, no external resource, nothing a browser must fetch.

use super::html::escape;
use crate::status::HISTORY;
use std::fmt::Write;

const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 72.0;
/// Room above the bars for the label of the scale.
const TOP: f64 = 14.0;
/// Each run's place: as many places as the history keeps, so that the charts of
/// every job share one scale of runs.
const SLOT: f64 = WIDTH / HISTORY as f64;

/// One run in a chart.
#[derive(Debug)]
pub(super) struct Bar {
    pub value: f64,
    /// The tooltip, as plain text.
    pub tip: String,
    /// The stylesheet class that colours it (the run's outcome).
    pub class: &'static str,
}

/// An SVG bar chart of `bars` (the last [`HISTORY`] if there are more), scaled
/// to the largest value, which `top_label` describes. `kind` names the chart
/// for the stylesheet and for tests (`data-chart`).
pub(super) fn bars(kind: &'static str, title: &str, bars: &[Bar], top_label: &str) -> String {
    let bars = &bars[bars.len().saturating_sub(HISTORY)..];
    let title = escape(title);
    let mut svg = format!(
        "<svg class=\"chart\" data-chart=\"{kind}\" xmlns=\"http://www.w3.org/2000/svg\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" \
         aria-label=\"{title}\"><title>{title}</title>"
    );
    let base = HEIGHT - 0.5;
    let _ = write!(
        svg,
        "<line class=\"base\" x1=\"0\" y1=\"{base}\" x2=\"{WIDTH}\" y2=\"{base}\"/>"
    );
    if bars.is_empty() {
        let _ = write!(
            svg,
            "<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no runs yet</text></svg>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return svg;
    }
    let _ = write!(
        svg,
        "<text class=\"label\" x=\"0\" y=\"10\">{}</text>",
        escape(top_label)
    );
    let value = |b: &Bar| {
        if b.value.is_finite() {
            b.value.max(0.0)
        } else {
            0.0
        }
    };
    let max = bars.iter().map(value).fold(0.0, f64::max);
    let room = HEIGHT - 1.0 - TOP;
    let first = HISTORY - bars.len();
    for (i, b) in bars.iter().enumerate() {
        // A run that stored nothing still gets a sliver, so that every run shows.
        let h = if max > 0.0 {
            (value(b) / max * room).max(1.0)
        } else {
            1.0
        };
        let x = (first + i) as f64 * SLOT + 1.0;
        let _ = write!(
            svg,
            "<rect class=\"bar {}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{}</title></rect>",
            b.class,
            HEIGHT - 1.0 - h,
            SLOT - 2.0,
            escape(&b.tip)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(value: f64) -> Bar {
        Bar {
            value,
            tip: format!("<{value}>"),
            class: "success",
        }
    }

    fn heights(svg: &str) -> Vec<f64> {
        svg.split("<rect ")
            .skip(1)
            .map(|r| {
                let h = r.split("height=\"").nth(1).expect("a height");
                h[..h.find('"').expect("quoted")].parse().expect("a number")
            })
            .collect()
    }

    #[test]
    fn one_bar_per_run_scaled_to_the_largest() {
        let svg = bars(
            "duration",
            "Duration",
            &[bar(1.0), bar(4.0), bar(2.0)],
            "4 s",
        );
        let h = heights(&svg);
        assert_eq!(h.len(), 3, "{svg}");
        assert_eq!(h[1], HEIGHT - 1.0 - TOP, "the largest fills the chart");
        assert!((h[0] * 4.0 - h[1]).abs() < 0.5 && (h[2] * 2.0 - h[1]).abs() < 0.5);
        assert!(svg.contains("<title>&lt;4&gt;</title>"), "tips are escaped");
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn no_runs_draw_no_bars() {
        let svg = bars("stored", "Stored", &[], "");
        assert!(heights(&svg).is_empty());
        assert!(svg.contains("no runs yet") && svg.ends_with("</svg>"));
    }

    /// Zero, negative and non-finite values (a failed run stored nothing; a
    /// hand-edited status file can say anything) draw a sliver, never a bar
    /// outside the chart.
    #[test]
    fn odd_values_stay_inside_the_chart() {
        let svg = bars(
            "stored",
            "Stored",
            &[
                bar(0.0),
                bar(-5.0),
                bar(f64::INFINITY),
                bar(f64::NAN),
                bar(8.0),
            ],
            "8 B",
        );
        let h = heights(&svg);
        assert_eq!(h, vec![1.0, 1.0, 1.0, 1.0, HEIGHT - 1.0 - TOP], "{svg}");
        let all_zero = heights(&bars("stored", "Stored", &[bar(0.0), bar(0.0)], ""));
        assert_eq!(all_zero, vec![1.0, 1.0]);
    }

    #[test]
    fn more_runs_than_the_history_keeps_show_the_last_ones() {
        let many: Vec<Bar> = (0..HISTORY + 12).map(|i| bar(i as f64)).collect();
        let svg = bars("duration", "Duration", &many, "");
        assert_eq!(heights(&svg).len(), HISTORY);
        assert!(svg.contains(&format!("<title>&lt;{}&gt;</title>", HISTORY + 11)));
        assert!(
            !svg.contains("<title>&lt;11&gt;</title>"),
            "the oldest are left out"
        );
        // The newest ends at the right edge.
        let last_x: f64 = svg
            .rsplit("<rect ")
            .next()
            .and_then(|r| r.split("x=\"").nth(1))
            .and_then(|x| x[..x.find('"')?].parse().ok())
            .expect("x of the last bar");
        assert!((last_x + SLOT - 1.0 - WIDTH).abs() < 0.01, "{last_x}");
    }
}
