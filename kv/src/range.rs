//! Key ranges for iterators, and the bytewise helpers that turn a prefix into a range.

use std::collections::BTreeMap;
use std::ops::Bound;

/// A half-open key range `[lower, upper)` in bytewise order; `None` means unbounded on that side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub lower: Option<Vec<u8>>,
    pub upper: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        Self::default()
    }

    /// `[lower, upper)`.
    pub fn new(lower: impl Into<Vec<u8>>, upper: impl Into<Vec<u8>>) -> Self {
        Self {
            lower: Some(lower.into()),
            upper: Some(upper.into()),
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        Self {
            lower: Some(prefix.to_vec()),
            upper: prefix_successor(prefix),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.lower.as_deref().is_none_or(|l| key >= l)
            && self.upper.as_deref().is_none_or(|u| key < u)
    }

    /// Where a seek to `key` must land: never below the lower bound, so engines need not rely on
    /// their own (loosely specified) handling of seeks under the bound.
    pub(crate) fn clamp_seek<'a>(&'a self, key: &'a [u8]) -> &'a [u8] {
        match self.lower.as_deref() {
            Some(l) if key < l => l,
            _ => key,
        }
    }

    /// True when no key can be in the range, which also keeps `[b, a)` with `a < b` from being
    /// handed to an engine.
    #[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
    pub(crate) fn is_empty(&self) -> bool {
        matches!((&self.lower, &self.upper), (Some(l), Some(u)) if l >= u)
    }
}

/// The smallest key above every key that starts with `prefix`, or `None` when there is none (the
/// prefix is empty or all `0xff`).
/// The keys of `map` in `[start, end)`, collected so the caller may then change the map
/// (remove them, or overwrite them) while walking the list.
pub fn keys_in_range<V>(map: &BTreeMap<Vec<u8>, V>, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
    if start >= end {
        return Vec::new();
    }
    map.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
        .map(|(k, _)| k.clone())
        .collect()
}

pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_carries_over_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn prefix_range_bounds() {
        let r = KeyRange::prefix(&[7, 0xff]);
        assert!(r.contains(&[7, 0xff]));
        assert!(r.contains(&[7, 0xff, 0xff, 0]));
        assert!(!r.contains(&[8]));
        assert!(!r.contains(&[7, 0xfe, 0xff]));
        assert!(KeyRange::new(b"b".to_vec(), b"a".to_vec()).is_empty());
        assert!(!KeyRange::all().is_empty());
    }
}
