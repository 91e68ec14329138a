//! Small bar charts as inline SVG for the status page: one bar per run, oldest
//! on the left, the newest at the right edge, coloured by the run's outcome
//! (the page's stylesheet says how), each with its value as a tooltip. Plain
//! markup: no script, no external resource, nothing a browser must fetch.

use super::html::escape;
use crate::status::HISTORY;
use crate::when::instant;
use std::fmt::Write;

const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 86.0;
/// Room above the bars for the label of the scale.
const TOP: f64 = 14.0;
/// Room below the bars for the time axis: ticks and the end times of runs.
const AXIS: f64 = 14.0;
/// Where the bars stand.
const FLOOR: f64 = HEIGHT - AXIS;
/// Each run's place: as many places as the history keeps, so that the charts of
/// every job share one scale of runs.
const SLOT: f64 = WIDTH / HISTORY as f64;
/// The lowest bar, in pixels: a run of 0.01 s among runs of minutes (typically
/// one that failed at once) must still show as a bar, not a sliver.
const MIN_BAR: f64 = 3.0;
/// A generous width of one character of the axis labels (10 px sans-serif), to
/// keep labels from overlapping.
const CHAR: f64 = 6.0;

/// One run in a chart.
#[derive(Debug)]
pub(super) struct Bar {
    pub value: f64,
    /// Unix seconds of the run's end, for the time axis.
    pub end: f64,
    /// The tooltip, as plain text.
    pub tip: String,
    /// The stylesheet class that colours it (the run's outcome).
    pub class: &'static str,
    /// A failed run's bar also gets a marker above it, so that a failure shows
    /// even where colour does not.
    pub marked: bool,
}

/// An SVG bar chart of `bars` (the last [`HISTORY`] if there are more), scaled
/// to the largest value, which `top_label` describes. `kind` names the chart
/// for the stylesheet and for tests (`data-chart`). Below the bars a time axis
/// labels the newest run's end, the oldest's and one between where they fit.
pub(super) fn bars(kind: &'static str, title: &str, bars: &[Bar], top_label: &str) -> String {
    let bars = &bars[bars.len().saturating_sub(HISTORY)..];
    let title = escape(title);
    let mut svg = format!(
        "<svg class=\"chart\" data-chart=\"{kind}\" xmlns=\"http://www.w3.org/2000/svg\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" \
         aria-label=\"{title}\"><title>{title}</title>"
    );
    let base = FLOOR - 0.5;
    let _ = write!(
        svg,
        "<line class=\"base\" x1=\"0\" y1=\"{base}\" x2=\"{WIDTH}\" y2=\"{base}\"/>"
    );
    if bars.is_empty() {
        let _ = write!(
            svg,
            "<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no runs yet</text></svg>",
            WIDTH / 2.0,
            FLOOR / 2.0
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
    let room = FLOOR - 1.0 - TOP;
    let first = HISTORY - bars.len();
    for (i, b) in bars.iter().enumerate() {
        // A run that stored nothing, or took a hundredth of a second, still gets
        // a bar that shows.
        let h = if max > 0.0 {
            (value(b) / max * room).max(MIN_BAR)
        } else {
            MIN_BAR
        };
        let x = (first + i) as f64 * SLOT + 1.0;
        let y = FLOOR - 1.0 - h;
        let _ = write!(
            svg,
            "<rect class=\"bar {}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{}</title></rect>",
            b.class,
            SLOT - 2.0,
            escape(&b.tip)
        );
        if b.marked {
            // A small triangle pointing down at the bar, inside the chart.
            let cx = x + (SLOT - 2.0) / 2.0;
            let tip_y = (y - 1.0).max(5.0);
            let _ = write!(
                svg,
                "<path class=\"mark failed\" d=\"M{:.1} {:.1}L{:.1} {:.1}L{cx:.1} {tip_y:.1}Z\"/>",
                cx - 3.5,
                tip_y - 5.0,
                cx + 3.5,
                tip_y - 5.0,
            );
        }
    }
    time_axis(&mut svg, bars, first);
    svg.push_str("</svg>");
    svg
}

/// Ticks and labels under the bars: the newest run's end at the right edge, the
/// oldest's under its bar and the middle one's, each only where it does not
/// overlap another (a few runs leave room for the newest alone). A label gives
/// the date only where it differs from the newest run's.
fn time_axis(svg: &mut String, bars: &[Bar], first: usize) {
    let Some(newest) = bars.last().and_then(|b| instant(b.end)) else {
        return;
    };
    let label = |end: f64| {
        instant(end).map(|t| {
            if t.date_naive() == newest.date_naive() {
                t.format("%H:%M").to_string()
            } else {
                t.format("%m-%d %H:%M").to_string()
            }
        })
    };
    let centre = |i: usize| (first + i) as f64 * SLOT + SLOT / 2.0;
    let y = HEIGHT - 2.0;
    let tick = |svg: &mut String, i: usize| {
        let x = centre(i);
        let _ = write!(
            svg,
            "<line class=\"tick\" x1=\"{x:.1}\" y1=\"{FLOOR}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>",
            FLOOR + 3.0
        );
    };
    // The newest, with its date: it sets the day the others are read against.
    let text = newest.format("%m-%d %H:%M UTC").to_string();
    let newest_left = WIDTH - text.len() as f64 * CHAR;
    tick(svg, bars.len() - 1);
    let _ = write!(
        svg,
        "<text class=\"label axis\" x=\"{WIDTH}\" y=\"{y}\" text-anchor=\"end\">{text}</text>"
    );
    if bars.len() < 2 {
        return;
    }
    // The oldest, starting under its bar.
    let mut oldest_right = 0.0;
    if let Some(text) = label(bars[0].end) {
        let left = (first as f64 * SLOT).max(0.0);
        let right = left + text.len() as f64 * CHAR;
        if right + CHAR < newest_left {
            tick(svg, 0);
            let _ = write!(
                svg,
                "<text class=\"label axis\" x=\"{left:.1}\" y=\"{y}\">{text}</text>"
            );
            oldest_right = right;
        }
    }
    // One between, centred under its bar.
    let mid = bars.len() / 2;
    if oldest_right > 0.0
        && mid > 0
        && mid < bars.len() - 1
        && let Some(text) = label(bars[mid].end)
    {
        let half = text.len() as f64 * CHAR / 2.0;
        let x = centre(mid);
        if x - half > oldest_right + CHAR && x + half + CHAR < newest_left {
            tick(svg, mid);
            let _ = write!(
                svg,
                "<text class=\"label axis\" x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{text}</text>"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(value: f64) -> Bar {
        Bar {
            value,
            end: 1_777_636_800.0, // 2026-05-01 12:00 UTC
            tip: format!("<{value}>"),
            class: "success",
            marked: false,
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
        assert_eq!(h[1], FLOOR - 1.0 - TOP, "the largest fills the chart");
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
        let m = MIN_BAR;
        assert_eq!(h, vec![m, m, m, m, FLOOR - 1.0 - TOP], "{svg}");
        let all_zero = heights(&bars("stored", "Stored", &[bar(0.0), bar(0.0)], ""));
        assert_eq!(all_zero, vec![m, m]);
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

    /// Issue 26: a failed run of 0.01 s among runs of minutes was a sliver of
    /// one pixel, in a colour alone. It is a bar of at least `MIN_BAR` with a
    /// marker; the others are not marked.
    #[test]
    fn a_failed_instant_run_shows_as_a_bar_with_a_marker() {
        let failed = Bar {
            class: "failed",
            marked: true,
            ..bar(0.01)
        };
        let svg = bars(
            "duration",
            "Duration",
            &[bar(600.0), failed, bar(300.0)],
            "",
        );
        let h = heights(&svg);
        assert_eq!(h[1], MIN_BAR, "{svg}");
        assert_eq!(svg.matches("class=\"mark failed\"").count(), 1, "{svg}");
        // The marker sits in the failed run's place, above its bar.
        let mark = svg
            .split("class=\"mark failed\" d=\"M")
            .nth(1)
            .expect("a mark");
        let mx: f64 = mark[..mark.find(' ').expect("x")].parse().expect("x");
        let slot = (HISTORY - 2) as f64 * SLOT;
        assert!(
            mx > slot && mx < slot + SLOT,
            "{mx} not in the slot at {slot}"
        );
    }

    fn axis_labels(svg: &str) -> Vec<String> {
        svg.split("<text class=\"label axis\"")
            .skip(1)
            .map(|t| {
                let t = &t[t.find('>').expect("tag end") + 1..];
                t[..t.find("</text>").expect("text end")].to_string()
            })
            .collect()
    }

    /// The time axis labels the newest run with its date and UTC, the oldest and
    /// one between with the time (and the date where it differs), each with a
    /// tick; labels that would overlap are left out.
    #[test]
    fn the_time_axis_labels_oldest_middle_and_newest_runs() {
        let hour = 3600.0;
        let newest = 1_777_636_800.0; // 2026-05-01 12:00 UTC
        let runs: Vec<Bar> = (0..30)
            .map(|i| Bar {
                end: newest - (29 - i) as f64 * hour,
                ..bar(1.0)
            })
            .collect();
        let svg = bars("duration", "Duration", &runs, "");
        assert_eq!(
            axis_labels(&svg),
            vec!["05-01 12:00 UTC", "04-30 07:00", "04-30 22:00"],
            "{svg}"
        );
        assert_eq!(svg.matches("class=\"tick\"").count(), 3, "{svg}");
        // Three runs in one afternoon: the newest and the oldest fit.
        let svg = bars("duration", "Duration", &runs[27..], "");
        assert_eq!(axis_labels(&svg), vec!["05-01 12:00 UTC"], "{svg}");
        // Twenty: the oldest fits, the middle one would touch the newest.
        let svg = bars("duration", "Duration", &runs[10..], "");
        assert_eq!(
            axis_labels(&svg),
            vec!["05-01 12:00 UTC", "04-30 17:00"],
            "{svg}"
        );
        // Same day as the newest: the time alone.
        let today: Vec<Bar> = (0..30)
            .map(|i| Bar {
                end: newest - (29 - i) as f64 * 60.0,
                ..bar(1.0)
            })
            .collect();
        let svg = bars("duration", "Duration", &today, "");
        assert_eq!(
            axis_labels(&svg),
            vec!["05-01 12:00 UTC", "11:31", "11:46"],
            "{svg}"
        );
        // One run, or a time that is none: no overlap, no panic.
        assert_eq!(
            axis_labels(&bars("duration", "D", &runs[29..], "")),
            vec!["05-01 12:00 UTC"]
        );
        let odd = [Bar {
            end: f64::NAN,
            ..bar(1.0)
        }];
        assert!(axis_labels(&bars("duration", "D", &odd, "")).is_empty());
    }
}
