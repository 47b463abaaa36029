//! The crate's only `unsafe`: local time conversion through libc, needed
//! because upstream prints times with `ctime()`/`strftime()` in the local
//! time zone and std has no time-zone support.

/// Broken-down local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tm {
    pub year: i32,
    pub mon: i32,
    pub mday: i32,
    pub hour: i32,
    pub min: i32,
    pub sec: i32,
    pub wday: i32,
}

/// `localtime_r(t)`; `None` if libc cannot represent the time.
pub fn localtime(t: i64) -> Option<Tm> {
    let tt: libc::time_t = t as libc::time_t;
    // SAFETY: an all-zero `struct tm` is a valid value (integers and a
    // nullable pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live, properly aligned locals;
    // localtime_r is the re-entrant variant and writes only into `tm`.
    let r = unsafe { libc::localtime_r(&tt, &mut tm) };
    if r.is_null() {
        return None;
    }
    Some(Tm {
        year: tm.tm_year + 1900,
        mon: tm.tm_mon,
        mday: tm.tm_mday,
        hour: tm.tm_hour,
        min: tm.tm_min,
        sec: tm.tm_sec,
        wday: tm.tm_wday,
    })
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `ctime(t)`, including the trailing newline.
pub fn ctime(t: i64) -> String {
    match localtime(t) {
        Some(tm) => format!(
            "{} {} {:2} {:02}:{:02}:{:02} {}\n",
            DAYS[tm.wday.clamp(0, 6) as usize],
            MONTHS[tm.mon.clamp(0, 11) as usize],
            tm.mday,
            tm.hour,
            tm.min,
            tm.sec,
            tm.year
        ),
        // glibc's ctime returns NULL, which printf shows as "(null)".
        None => "(null)".to_string(),
    }
}

/// `strftime("%Y/%m/%d %H:%M:%S", localtime(t))`.
pub fn timestamp(t: i64) -> String {
    match localtime(t) {
        Some(tm) => format!(
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
            tm.year,
            tm.mon + 1,
            tm.mday,
            tm.hour,
            tm.min,
            tm.sec
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_shape() {
        let s = ctime(0);
        assert_eq!(s.len(), 25, "{s:?}");
        assert!(s.ends_with('\n'));
        assert_eq!(timestamp(0).len(), 19);
    }
}
