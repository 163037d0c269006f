//! Element-wise loops over channel rows in fixed chunks of [`LANES`] values, for the transforms
//! compiled once per vector path (`isa::per_path!`).
//!
//! Why: a plain `for ch in 0..c` loop is vectorised with several vectors per iteration (LLVM
//! interleaves 4 by default), so its main body covers 4 x 16 = 64 channels under AVX-512 and
//! every shorter row (the U-Net's 32-channel level, the 1-channel input) runs entirely in the
//! scalar remainder. Measured on a 2-core Xeon (2026-12-03, perf of `cineseg demo`): the
//! AVX-512 copy of the Winograd input transform took twice the time of the SSE2 copy. A chunk of
//! 16 fixed-size values is one AVX-512 vector, two AVX2 vectors or four SSE2 vectors, so every
//! path vectorises the whole of a 16-, 32- or 64-channel row and only a true remainder is scalar.

/// Values per chunk: one AVX-512 register of f32.
pub const LANES: usize = 16;

/// `out[i] = f(a[i], b[i])` for `i < out.len()` (`a` and `b` at least as long).
#[inline(always)]
pub fn map2(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    let n = out.len();
    let (a, b) = (&a[..n], &b[..n]);
    let split = n - n % LANES;
    let (oh, ot) = out.split_at_mut(split);
    for ((o, a), b) in oh
        .chunks_exact_mut(LANES)
        .zip(a.chunks_exact(LANES))
        .zip(b.chunks_exact(LANES))
    {
        for i in 0..LANES {
            o[i] = f(a[i], b[i]);
        }
    }
    for ((o, a), b) in ot.iter_mut().zip(&a[split..]).zip(&b[split..]) {
        *o = f(*a, *b);
    }
}

/// `out[i] = f(a[i], b[i], c[i])` for `i < out.len()`.
#[inline(always)]
pub fn map3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) {
    let n = out.len();
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let split = n - n % LANES;
    let (oh, ot) = out.split_at_mut(split);
    for (((o, a), b), c) in oh
        .chunks_exact_mut(LANES)
        .zip(a.chunks_exact(LANES))
        .zip(b.chunks_exact(LANES))
        .zip(c.chunks_exact(LANES))
    {
        for i in 0..LANES {
            o[i] = f(a[i], b[i], c[i]);
        }
    }
    for (((o, a), b), c) in ot
        .iter_mut()
        .zip(&a[split..])
        .zip(&b[split..])
        .zip(&c[split..])
    {
        *o = f(*a, *b, *c);
    }
}

/// `v[i] = f(v[i], a[i])` for `i < v.len()`.
#[inline(always)]
pub fn update(v: &mut [f32], a: &[f32], f: impl Fn(f32, f32) -> f32) {
    let n = v.len();
    let a = &a[..n];
    let split = n - n % LANES;
    let (vh, vt) = v.split_at_mut(split);
    for (o, a) in vh.chunks_exact_mut(LANES).zip(a.chunks_exact(LANES)) {
        for i in 0..LANES {
            o[i] = f(o[i], a[i]);
        }
    }
    for (o, a) in vt.iter_mut().zip(&a[split..]) {
        *o = f(*o, *a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_around_the_chunk_size_matches_a_plain_loop() {
        for n in [0, 1, 5, 15, 16, 17, 31, 32, 33, 64, 100] {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
            let b: Vec<f32> = (0..n).map(|i| 3.0 - i as f32).collect();
            let c: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
            let mut o = vec![f32::NAN; n];
            map2(&mut o, &a, &b, |x, y| x - y);
            assert!((0..n).all(|i| o[i] == a[i] - b[i]), "map2, n = {n}");
            map3(&mut o, &a, &b, &c, |x, y, z| x + y - z);
            assert!((0..n).all(|i| o[i] == a[i] + b[i] - c[i]), "map3, n = {n}");
            let mut v = a.clone();
            update(&mut v, &b, |x, y| (x + y).max(0.0));
            assert!(
                (0..n).all(|i| v[i] == (a[i] + b[i]).max(0.0)),
                "update, n = {n}"
            );
        }
    }
}
