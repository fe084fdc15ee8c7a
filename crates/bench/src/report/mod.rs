//! The outputs of a run besides the official JSON: `report.html` (self-contained:
//! inline CSS and hand-written SVG, nothing fetched), the time series, the flat list
//! of figures that `--runs` aggregates (and the aggregate), and the short human
//! summary.
//!
//! - `figures`: what the report derives from a run (share of the ceiling, CPU during
//!   the test, the backend's peaks, the end audit), and the flat list of figures;
//! - `text`: the summary printed at the end of a run;
//! - `html`: the page; `charts` and `process_charts`: its charts, one function each;
//!   `svg`: the line chart they are drawn with, `bars`: the latency distribution's;
//!   `stages`: the per-stage table's figures;
//! - `runs`: the min / median / max of every figure across `--runs`; `matrix`: one
//!   row per scenario of `--scenarios`; `ladder`: one row per rung of `--ladder`;
//! - `timeseries`: the run one row a second (`timeseries.csv`, `bench.json`);
//! - `scaled`: the scaled topology's figures (summary lines, the page's section) and
//!   the table of several worker counts (`scale.txt`);
//! - `format`: money, megabytes and HTML escaping, shared by the others.
//!
//! Hand-written SVG rather than a plotting crate: line charts with a legend and stage
//! markers and one bar chart are a few hundred lines, and the report stays a few
//! hundred kilobytes.

mod bars;
mod charts;
mod figures;
mod format;
mod html;
mod ladder;
mod matrix;
mod process_charts;
mod runs;
mod scaled;
mod stages;
mod svg;
mod text;
mod timeseries;

pub use figures::{
    backend_cpu_during_test, backend_peak_cores, cpu_during_test, end_audit_difference,
    fallback_share, fee_mismatch, figures, is_backend, peak_cores, percent_of_ceiling, run_ceiling,
};
pub use html::{html, CHECK_SCRIPT};
pub use ladder::{ladder_html, ladder_json, ladder_text};
pub use matrix::{matrix_json, matrix_row, matrix_text, MatrixRow};
pub use runs::{aggregate, median};
pub use scaled::{
    scale_json, scale_row, scale_text, scaled_lines, scenario_figures, ScaleRow, SCALE_LEGEND,
};
pub use text::summary_text;
pub use timeseries::{timeseries, TimeSeries, FIXED_COLUMNS, PROCESS_COLUMNS};

use crate::floor::Comparison;
use crate::provenance::Provenance;
use crate::runner::RunData;
use crate::thresholds::Judgement;
use crate::topology::{EventCounts, LimitsNote, ProcUsage};

/// A finished run with what the report needs beyond the measurements.
pub struct RunOutput {
    pub data: RunData,
    /// Usage of each started process when it was stopped.
    pub usage: Vec<ProcUsage>,
    pub limits: LimitsNote,
    /// Exits and restarts of started processes during the run.
    pub events: Vec<String>,
    /// Those, counted.
    pub event_counts: EventCounts,
    /// The command line, for the record.
    pub command: String,
    /// The commit and the machine the figures come from.
    pub provenance: Provenance,
    /// The thresholds checked and those crossed.
    pub judgement: Judgement,
    /// This run against the floor, with `--floor`.
    pub floor: Option<Comparison>,
}

#[cfg(test)]
mod snapshot_tests;
