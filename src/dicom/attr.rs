//! Lenient attribute accessors: real scanners write padded, empty or slightly non-standard
//! values (a UID component with a leading zero, an empty SliceThickness), and a receiver beside
//! the scanner must take what it is given. Every accessor returns `None` instead of failing when
//! a value is absent, empty or unparsable, and the caller decides whether that is fatal.

use dicom_core::Tag;
use dicom_object::InMemDicomObject;

/// The data set type all accessors work on (root data sets and sequence items alike).
pub(crate) type Obj = InMemDicomObject;

/// Trimmed string value, `None` when absent or empty.
pub(crate) fn string(obj: &Obj, tag: Tag) -> Option<String> {
    let elem = obj.get(tag)?;
    let s = elem.to_str().ok()?;
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!t.is_empty()).then(|| t.to_string())
}

/// All numeric values (DS, IS, FD, US...), `None` when absent, empty or unparsable.
pub(crate) fn floats(obj: &Obj, tag: Tag) -> Option<Vec<f64>> {
    let elem = obj.get(tag)?;
    let v = elem.to_multi_float64().ok()?;
    (!v.is_empty() && v.iter().all(|x| x.is_finite())).then_some(v)
}

/// First numeric value.
pub(crate) fn float(obj: &Obj, tag: Tag) -> Option<f64> {
    floats(obj, tag)?.first().copied()
}

/// First value as an integer (IS, US, UL...).
pub(crate) fn int(obj: &Obj, tag: Tag) -> Option<i64> {
    let elem = obj.get(tag)?;
    if let Ok(v) = elem.to_int::<i64>() {
        return Some(v);
    }
    // Some writers put "1.0" in an IS; accept whole numbers written as decimals.
    let f = float(obj, tag)?;
    (f.fract() == 0.0 && f.abs() < 1e15).then_some(f as i64)
}

/// Exactly `N` numeric values (e.g. 3 for ImagePositionPatient).
pub(crate) fn float_array<const N: usize>(obj: &Obj, tag: Tag) -> Option<[f64; N]> {
    let v = floats(obj, tag)?;
    if v.len() < N {
        return None;
    }
    let mut out = [0.0; N];
    out.copy_from_slice(v.get(..N)?);
    Some(out)
}

/// Items of a sequence, empty when absent or not a sequence.
pub(crate) fn items(obj: &Obj, tag: Tag) -> &[Obj] {
    obj.get(tag).and_then(|e| e.items()).unwrap_or(&[])
}

/// First item of a sequence.
pub(crate) fn first_item(obj: &Obj, tag: Tag) -> Option<&Obj> {
    items(obj, tag).first()
}
