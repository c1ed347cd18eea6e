//! A rollout's progress: on a terminal one live line per host (indicatif),
//! otherwise one printed line per host per step; nothing with `--json`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::releases::HostWork;

/// How the steps are shown.
pub enum Progress {
    /// Live lines, one per host.
    Live {
        multi: MultiProgress,
        bars: BTreeMap<String, ProgressBar>,
    },
    /// One line per step.
    Lines,
    /// Nothing (`--json`).
    Quiet,
}

impl Progress {
    /// The display for these hosts: live on a terminal.
    pub fn new(works: &[HostWork], json: bool) -> Self {
        if json {
            return Progress::Quiet;
        }
        if !std::io::stdout().is_terminal() {
            return Progress::Lines;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let width = works
            .iter()
            .map(|work| work.target.name.len())
            .max()
            .unwrap_or(0);
        let style =
            ProgressStyle::with_template(&format!("{{spinner}} {{prefix:<{width}}} {{msg}}"))
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = works
            .iter()
            .map(|work| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(work.target.name.clone());
                bar.set_message("waiting");
                bar.enable_steady_tick(Duration::from_millis(120));
                (work.target.name.clone(), bar)
            })
            .collect();
        Progress::Live { multi, bars }
    }

    /// Host `host` is at `step`.
    pub fn step(&self, host: &str, step: &str) {
        match self {
            Progress::Live { bars, .. } => {
                if let Some(bar) = bars.get(host) {
                    bar.set_message(step.to_owned());
                }
            }
            Progress::Lines => println!("{host}: {step}"),
            Progress::Quiet => {}
        }
    }

    /// A line about the whole rollout.
    pub fn note(&self, text: &str) {
        match self {
            Progress::Live { multi, .. } => {
                let _ = multi.println(text);
            }
            Progress::Lines => println!("{text}"),
            Progress::Quiet => {}
        }
    }

    /// Stops the live lines, leaving each host's last step on screen.
    pub fn finish(&self) {
        if let Progress::Live { bars, .. } = self {
            for bar in bars.values() {
                bar.finish();
            }
        }
    }
}
