//! CPU time of server processes, from `/proc/<pid>/stat`.

use std::process::Command;

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`, 100 if
/// that fails, as it is on every usual Linux).
pub fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// User plus system time, in ticks, of every process in `pids` (its
/// threads included).
pub fn ticks(pids: &[u32]) -> Result<u64, String> {
    pids.iter().map(|&pid| ticks_of(pid)).sum()
}

fn ticks_of(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_stat(&stat).ok_or_else(|| format!("{path}: unexpected format"))
}

/// utime + stime from the text of a `stat` file.
fn parse_stat(stat: &str) -> Option<u64> {
    // The fields after the command name (which may hold spaces and parentheses).
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_time_are_read_after_the_command_name() {
        let stat = "4242 (raft kv) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 731 269 0 0 20 0 9 0 1000 0 0";
        assert_eq!(parse_stat(stat), Some(1000));
        assert_eq!(parse_stat("4242 (short) S 1"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(ticks(&[std::process::id()]).is_ok());
        assert!(ticks(&[u32::MAX]).is_err());
    }
}
