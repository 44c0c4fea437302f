//! Memory and CPU of a process from `/proc/<pid>/status` and `/proc/<pid>/stat` (Linux only).

use std::time::Duration;

/// Memory of a process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub rss_bytes: u64,
    /// Peak resident set size since start (`VmHWM`).
    pub peak_rss_bytes: u64,
}

/// Reads `/proc/<pid>/status`; `None` once the process is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&text)
}

/// CPU time (user + system) the process used so far; `None` once it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_ticks(&text)?;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second() as f64,
    ))
}

/// `VmRSS` and `VmHWM` in bytes from the text of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Option<Memory> {
    let kib = |field: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(field))?;
        line[field.len()..]
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    Some(Memory {
        rss_bytes: kib("VmRSS:")? * 1024,
        peak_rss_bytes: kib("VmHWM:")? * 1024,
    })
}

/// utime + stime, in clock ticks, from the text of `/proc/<pid>/stat`.
///
/// The command name (field 2) may hold spaces and parentheses, so fields are counted from the
/// last `)`: utime and stime are fields 14 and 15 of the line.
pub fn parse_stat_ticks(text: &str) -> Option<u64> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state), so field n is fields[n - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `getconf CLK_TCK`, which is 100 on every Linux this runs on; asked once, 100 if unknown.
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gives_current_and_peak_rss_in_bytes() {
        let text =
            "Name:\tngit-sync\nVmPeak:\t  900000 kB\nVmHWM:\t   52340 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss_bytes: 40_000 * 1024,
                peak_rss_bytes: 52_340 * 1024,
            })
        );
        assert_eq!(parse_status("Name:\tzombie\n"), None);
    }

    #[test]
    fn stat_ticks_survive_a_command_name_with_spaces_and_parens() {
        let text = "4242 (ngit sync (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 37 0 0 20 0 9 0 12345 1000000 5000 18446744073709551615";
        assert_eq!(parse_stat_ticks(text), Some(287));
    }

    #[test]
    fn this_process_is_readable() {
        let me = std::process::id();
        let mem = memory(me).expect("own status");
        assert!(mem.peak_rss_bytes >= mem.rss_bytes && mem.rss_bytes > 0);
        assert!(cpu_time(me).is_some());
    }
}
