//! The view's pure pieces: sparklines, sizes, the header's text and the
//! table's columns.

use super::*;

#[test]
fn sparklines_scale_cpu_from_zero_and_memory_over_its_range() {
    assert_eq!(
        sparkline(&[Some(0.0), Some(50.0), Some(100.0)], 3, true),
        "▁▅█"
    );
    assert_eq!(sparkline(&[Some(1.0), Some(2.0)], 4, true), "  ▅█");
    assert_eq!(sparkline(&[None, None], 3, true), "···");
    assert_eq!(sparkline(&[Some(0.0), None, Some(0.0)], 3, true), "▁ ▁");
    assert_eq!(sparkline(&[Some(1.0); 50], 5, true).chars().count(), 5);
    // Memory: 100 MiB growing by 1 MiB still spans the bars.
    let leak: Vec<Option<f64>> = (0..8).map(|n| Some(100e6 + n as f64 * 1e6)).collect();
    assert_eq!(sparkline(&leak, 8, false), "▁▂▃▄▅▆▇█");
    assert_eq!(sparkline(&[Some(5.0); 3], 3, false), "▄▄▄");
    // Issue #14, item 20: an idle agent (its CPU reads 0.0%) draws a
    // baseline, not full bars from hundredths of a percent.
    assert_eq!(sparkline(&[Some(0.0); 6], 6, true), "▁▁▁▁▁▁");
    assert_eq!(
        sparkline(&[Some(0.0), Some(0.02), Some(0.01), Some(0.0)], 4, true),
        "▁▁▁▁"
    );
    assert_eq!(
        sparkline(&[Some(0.0), Some(0.5), Some(1.0)], 3, true),
        "▁▅█"
    );
}

#[test]
fn narrow_tables_drop_columns_before_they_cut_the_state() {
    let full = Columns::fit(80, 25);
    assert_eq!(
        (full.name, full.state, full.spark),
        (17, 10, 6),
        "80 columns: {full:?}"
    );
    assert!(full.health && full.cpu && full.memory && full.restarts && full.uptime);
    let forty = Columns::fit(40, 25);
    assert_eq!(forty.state, STATE_WIDTH, "{forty:?}");
    assert!(forty.health, "{forty:?}");
    assert!(!forty.uptime && forty.spark == 0, "{forty:?}");
    for width in 0..=200u16 {
        for longest in [1u16, 4, 12, 25, 64] {
            let columns = Columns::fit(width, longest);
            let mut used = MARKER + columns.name + 1 + columns.state;
            for (shown, cells) in [
                (columns.health, 9),
                (columns.cpu, 6),
                (columns.memory, 6),
                (columns.restarts, 4),
                (columns.uptime, 6),
            ] {
                if shown {
                    used += 1 + cells;
                }
            }
            if columns.spark > 0 {
                used += 2 * (1 + columns.spark);
            }
            assert!(
                used <= width || width < MARKER + 1 + 4,
                "{width} wide, longest {longest}: {columns:?} needs {used}"
            );
            if width >= MARKER + 4 + 1 + STATE_WIDTH {
                assert_eq!(columns.state, STATE_WIDTH, "{width}: {columns:?}");
            }
        }
    }
    assert_eq!(Columns::fit(12, 25).state, 4);
    assert_eq!(short_state(AgentState::Running), "run");
}

#[test]
fn the_header_says_what_to_do_before_the_error() {
    let refused = down_text(3, "connecting to /h/roster.sock: Connection refused\nmore");
    assert!(
        refused.starts_with(
            " daemon not answering for 3s (retrying; roster up starts it): connecting"
        ),
        "{refused}"
    );
    assert!(!refused.contains("more"), "{refused}");
    let denied = down_text(
        0,
        "connecting to /h/roster.sock: Permission denied (os error 13)",
    );
    assert!(
        denied.starts_with(" no access to the daemon (0s): this user may not use its socket"),
        "{denied}"
    );
}

#[test]
fn memory_fits_six_characters() {
    assert_eq!(memory(512), "512B");
    assert_eq!(memory(1536), "1.5K");
    assert_eq!(memory(300 * 1024 * 1024), "300M");
    assert_eq!(memory(u64::MAX), "16.0E");
    assert!(memory(1023 * 1024 * 1024).len() <= 6);
}
