//! Step 5: the `Range` field (RFC 9110 §14): which bytes of the file are asked for, and whether
//! they are worth sending as asked. Asked by [`super::conditional::decide`] once the
//! preconditions hold.

/// More ranges than this in one request are ignored (the whole file is sent instead).
pub(super) const MAX_RANGES: usize = 16;

pub(super) fn overlapping(ranges: &[(u64, u64)]) -> bool {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).any(|w| w[1].0 <= w[0].1)
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ranges {
    /// Not a byte range set we understand: send the whole file.
    Ignore,
    Unsatisfiable,
    Satisfiable(Vec<(u64, u64)>),
}

/// Parses `bytes=0-99, 200-, -50` against a length (RFC 9110 §14.1.2).
pub(super) fn parse_ranges(value: &str, len: u64) -> Ranges {
    let Some((unit, set)) = value.trim().split_once('=') else {
        return Ranges::Ignore;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranges::Ignore;
    }
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // All digits but too large: as far beyond the end as can be.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    let mut out = Vec::new();
    let mut any = false;
    for spec in set.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        any = true;
        let Some((first, last)) = spec.split_once('-') else {
            return Ranges::Ignore;
        };
        let (first, last) = (first.trim(), last.trim());
        if first.is_empty() {
            let Some(suffix) = number(last) else {
                return Ranges::Ignore;
            };
            if suffix > 0 && len > 0 {
                out.push((len.saturating_sub(suffix), len - 1));
            }
            continue;
        }
        let Some(first) = number(first) else {
            return Ranges::Ignore;
        };
        let last = if last.is_empty() {
            None
        } else {
            match number(last) {
                Some(l) if l >= first => Some(l),
                _ => return Ranges::Ignore,
            }
        };
        if first < len {
            out.push((first, last.map_or(len - 1, |l| l.min(len - 1))));
        }
    }
    if !any {
        Ranges::Ignore
    } else if out.is_empty() {
        Ranges::Unsatisfiable
    } else {
        Ranges::Satisfiable(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_per_rfc_9110() {
        use Ranges::*;
        assert_eq!(parse_ranges("bytes=0-9", 100), Satisfiable(vec![(0, 9)]));
        assert_eq!(parse_ranges("bytes=90-", 100), Satisfiable(vec![(90, 99)]));
        assert_eq!(parse_ranges("bytes=-10", 100), Satisfiable(vec![(90, 99)]));
        assert_eq!(parse_ranges("bytes=-500", 100), Satisfiable(vec![(0, 99)]));
        assert_eq!(
            parse_ranges("bytes=50-500", 100),
            Satisfiable(vec![(50, 99)])
        );
        assert_eq!(
            parse_ranges("BYTES = 0-0 , 2-3,", 100),
            Satisfiable(vec![(0, 0), (2, 3)])
        );
        assert_eq!(parse_ranges("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_ranges("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_ranges("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(
            parse_ranges("bytes=99999999999999999999999-", 100),
            Unsatisfiable
        );
        assert_eq!(
            parse_ranges("bytes=200-300,0-1", 100),
            Satisfiable(vec![(0, 1)])
        );
        assert_eq!(parse_ranges("bytes=5-1", 100), Ignore);
        assert_eq!(parse_ranges("bytes=a-b", 100), Ignore);
        assert_eq!(parse_ranges("items=0-1", 100), Ignore);
        assert_eq!(parse_ranges("bytes=", 100), Ignore);
        assert_eq!(parse_ranges("bytes=1", 100), Ignore);
        assert_eq!(parse_ranges("bytes=-1-2", 100), Ignore);
    }
}
