//! Signal names as LXD and users write them (`SIGPWR`, `PWR`, `SIGRTMIN+3`, `15`).

/// Classic signals by name, without the `SIG` prefix.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Real-time signals as the C library numbers them (glibc reserves 32 and 33).
fn rt_range() -> (i32, i32) {
    (libc::SIGRTMIN(), libc::SIGRTMAX())
}

/// Parses a signal name or number.
///
/// Accepts `SIGTERM`, `TERM`, `term`, numbers (`15`, valid range 1..=SIGRTMAX) and the
/// real-time forms `SIGRTMIN`, `SIGRTMIN+3`, `RTMAX-2` (relative to the C library's
/// `SIGRTMIN`/`SIGRTMAX`, as systemd and LXD count them: `SIGRTMIN+3` is 37 on glibc).
/// Returns `None` for anything else.
pub fn signal_from_name(name: &str) -> Option<i32> {
    let s = name.trim();
    let (rtmin, rtmax) = rt_range();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i32 = s.parse().ok()?;
        return (1..=rtmax).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = SIGNALS.iter().find(|(k, _)| *k == bare) {
        return Some(n);
    }
    let rt = |rest: &str, base: i32, sign: i32| -> Option<i32> {
        let n = if rest.is_empty() {
            base
        } else {
            let (op, digits) = rest.split_at(1);
            let off: i32 = digits.parse().ok()?;
            match op {
                "+" if sign >= 0 => base + off,
                "-" if sign <= 0 => base - off,
                _ => return None,
            }
        };
        (rtmin..=rtmax).contains(&n).then_some(n)
    };
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        return rt(rest, rtmin, 1);
    }
    if let Some(rest) = bare.strip_prefix("RTMAX") {
        return rt(rest, rtmax, -1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(signal_from_name("SIGPWR"), Some(libc::SIGPWR));
        assert_eq!(signal_from_name("PWR"), Some(libc::SIGPWR));
        assert_eq!(signal_from_name("term"), Some(15));
        assert_eq!(signal_from_name("SIGKILL"), Some(9));
        assert_eq!(signal_from_name("15"), Some(15));
        assert_eq!(signal_from_name("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
        assert_eq!(signal_from_name("RTMIN"), Some(libc::SIGRTMIN()));
        assert_eq!(signal_from_name("SIGRTMAX-1"), Some(libc::SIGRTMAX() - 1));
    }

    #[test]
    fn rejects_unknown() {
        for bad in [
            "",
            "SIG",
            "FOO",
            "0",
            "65",
            "-1",
            "SIGRTMIN-1",
            "SIGRTMAX+1",
            "RTMIN+x",
        ] {
            assert_eq!(signal_from_name(bad), None, "{bad:?}");
        }
    }
}
