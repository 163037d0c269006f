//! Winograd F(2x2, 3x3) convolution (Lavin & Gray 2015) for the large-image levels of the
//! U-Net: each 2x2 output tile needs 16 multiplies per channel pair instead of 36, so the GEMM
//! work drops 2.25x. Used for forward and data-gradient 3x3 convolutions when there are enough
//! tiles to keep the 16 per-position GEMMs efficient; the im2col path covers the rest.
//!
//! Matrices (correlation form, as CNNs use):
//! `B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]`, `G = [[1,0,0],[.5,.5,.5],[.5,-.5,.5],[0,0,1]]`,
//! `A^T = [[1,1,1,0],[0,1,-1,-1]]`; `Y = A^T [(G g G^T) ⊙ (B^T d B)] A`.

use super::conv3x3::Epilogue;
use super::isa::per_path;
use super::lanes::{map2, map3, update};
use super::precision::Precision;
use crate::nn::buffer::Scratch;
use crate::nn::gemm::{gemm_in, MatRef, Par, Rhs};
use crate::nn::Tensor;
use rayon::prelude::*;

/// Transforms OIHW 3x3 weights into `U[16][cin][cout]` (`G g G^T` per channel pair).
pub fn transform_weights(w_oihw: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    // Output-channel innermost: the 16 destination planes are written sequentially.
    let mut u = vec![0.0f32; 16 * cin * cout];
    for ci in 0..cin {
        for co in 0..cout {
            let g = &w_oihw[(co * cin + ci) * 9..][..9];
            // t = G g (4x3), then U = t G^T (4x4); computed in f64 for exactness of the halves.
            let mut t = [[0.0f64; 3]; 4];
            for c in 0..3 {
                let (g0, g1, g2) = (g[c] as f64, g[3 + c] as f64, g[6 + c] as f64);
                t[0][c] = g0;
                t[1][c] = 0.5 * (g0 + g1 + g2);
                t[2][c] = 0.5 * (g0 - g1 + g2);
                t[3][c] = g2;
            }
            for r in 0..4 {
                let (a, b, c) = (t[r][0], t[r][1], t[r][2]);
                let row = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                for (k, v) in row.iter().enumerate() {
                    u[((r * 4 + k) * cin + ci) * cout + co] = *v as f32;
                }
            }
        }
    }
    u
}

/// Tiles per chunk: the transformed input and the 16 GEMM outputs of a chunk stay in cache.
fn chunk_tiles(cin: usize, cout: usize) -> usize {
    ((1usize << 19) / (16 * (cin + cout))).clamp(96, 1024)
}

/// Number of 2x2 output tiles of an image batch.
pub fn tile_count(n: usize, h: usize, w: usize) -> usize {
    n * h.div_ceil(2) * w.div_ceil(2)
}

per_path! {
/// Input transform of tiles `t0..t0 + tc` into `v` (`[16][tc][c]`). Loops run over channels
/// innermost on contiguous slices so they vectorise.
fn transform_input(x: &Tensor, t0: usize, tc: usize, v: &mut [f32], scratch: &mut Vec<f32>) {
    let (h, w, c) = (x.h, x.w, x.c);
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    scratch.resize(17 * c, 0.0);
    let (r, zeros) = scratch.split_at_mut(16 * c);
    zeros.fill(0.0);
    for t in 0..tc {
        let tile = t0 + t;
        let (img, rem) = (tile / (th * tw), tile % (th * tw));
        let (y0, x0) = (2 * (rem / tw) as isize - 1, 2 * (rem % tw) as isize - 1);
        let mut d: [&[f32]; 16] = [&zeros[..]; 16];
        for i in 0..4 {
            for j in 0..4 {
                let (yy, xx) = (y0 + i as isize, x0 + j as isize);
                if yy >= 0 && yy < h as isize && xx >= 0 && xx < w as isize {
                    let s = ((img * h + yy as usize) * w + xx as usize) * c;
                    d[i * 4 + j] = &x.data[s..s + c];
                }
            }
        }
        // Rows: r = B^T d (row i of r combines rows of d).
        for j in 0..4 {
            let (d0, d1, d2, d3) = (d[j], d[4 + j], d[8 + j], d[12 + j]);
            map2(&mut r[j * c..(j + 1) * c], d0, d2, |p, q| p - q);
            map2(&mut r[(4 + j) * c..(5 + j) * c], d1, d2, |p, q| p + q);
            map2(&mut r[(8 + j) * c..(9 + j) * c], d2, d1, |p, q| p - q);
            map2(&mut r[(12 + j) * c..(13 + j) * c], d1, d3, |p, q| p - q);
        }
        // Columns: (B^T d) B, written to the 16 GEMM inputs.
        for i in 0..4 {
            let row = &r[i * 4 * c..(i * 4 + 4) * c];
            let (a, b, cc, dd) = (&row[..c], &row[c..2 * c], &row[2 * c..3 * c], &row[3 * c..]);
            let out = |k: usize| ((i * 4 + k) * tc + t) * c;
            map2(&mut v[out(0)..out(0) + c], a, cc, |p, q| p - q);
            map2(&mut v[out(1)..out(1) + c], b, cc, |p, q| p + q);
            map2(&mut v[out(2)..out(2) + c], cc, b, |p, q| p - q);
            map2(&mut v[out(3)..out(3) + c], b, dd, |p, q| p - q);
        }
    }
}
}

per_path! {
/// Output transform of `m` (`[16][tc][cout]`) into the output rows, with the epilogue.
#[allow(clippy::too_many_arguments)]
fn transform_output(
    m: &[f32],
    t0: usize,
    tc: usize,
    n_h_w: (usize, usize),
    cout: usize,
    epi: Epilogue<'_>,
    out: &OutPtr,
    scratch: &mut Vec<f32>,
) {
    let (h, w) = n_h_w;
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    scratch.resize(12 * cout, 0.0);
    let (tmp, y) = scratch.split_at_mut(8 * cout);
    for t in 0..tc {
        let tile = t0 + t;
        let (img, rem) = (tile / (th * tw), tile % (th * tw));
        let (y0, x0) = (2 * (rem / tw), 2 * (rem % tw));
        let g = |k: usize| &m[(k * tc + t) * cout..(k * tc + t + 1) * cout];
        // tmp = A^T m (2 x 4 rows of cout values).
        for k in 0..4 {
            let (m0, m1, m2, m3) = (g(k), g(4 + k), g(8 + k), g(12 + k));
            map3(&mut tmp[k * cout..(k + 1) * cout], m0, m1, m2, |p, q, r| p + q + r);
            map3(&mut tmp[(4 + k) * cout..(5 + k) * cout], m1, m2, m3, |p, q, r| p - q - r);
        }
        // y = tmp A (2 x 2 pixels of cout values).
        for j in 0..2 {
            let base = j * 4 * cout;
            let (a, rest) = tmp[base..base + 4 * cout].split_at(cout);
            let (b, rest) = rest.split_at(cout);
            let (cc, dd) = rest.split_at(cout);
            let (y0r, y1r) = y[j * 2 * cout..(j + 1) * 2 * cout].split_at_mut(cout);
            map3(y0r, a, b, cc, |p, q, r| p + q + r);
            map3(y1r, b, cc, dd, |p, q, r| p - q - r);
        }
        if let Epilogue::BiasRelu(bias) = epi {
            for px in y.chunks_exact_mut(cout) {
                update(px, bias, |v, b| (v + b).max(0.0));
            }
        }
        for dy in 0..2 {
            for dx in 0..2 {
                let (yy, xx) = (y0 + dy, x0 + dx);
                if yy < h && xx < w {
                    let src = &y[(dy * 2 + dx) * cout..(dy * 2 + dx + 1) * cout];
                    // SAFETY: each output pixel belongs to exactly one tile and tiles are split
                    // into disjoint chunks, so no two threads write the same range; `write`
                    // checks the range against the buffer.
                    unsafe { out.write(((img * h + yy) * w + xx) * cout, src) };
                }
            }
        }
    }
}
}

/// Shared output buffer written at disjoint ranges by the tile chunks.
struct OutPtr {
    ptr: *mut f32,
    len: usize,
}
unsafe impl Sync for OutPtr {}
impl OutPtr {
    fn new(s: &mut [f32]) -> Self {
        OutPtr {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }
    /// Copies `src` to `start..start + src.len()`; the caller guarantees no concurrent writer
    /// of that range.
    unsafe fn write(&self, start: usize, src: &[f32]) {
        assert!(start + src.len() <= self.len);
        std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(start), src.len());
    }
}

/// 3x3 convolution (padding 1) of `x` with transformed weights `u` (the 16 `cin x cout`
/// GEMM operands, either precision) into `out` (`pixels x cout`).
pub fn forward_into(
    x: &Tensor,
    u: &[Rhs<'_>],
    cout: usize,
    epi: Epilogue<'_>,
    threads: usize,
    out: &mut [f32],
) {
    let c = x.c;
    assert_eq!(u.len(), 16, "winograd: 16 weight matrices expected");
    assert_eq!(out.len(), x.pixels() * cout);
    let tiles = tile_count(x.n, x.h, x.w);
    let tc = chunk_tiles(c, cout);
    let nchunks = tiles.div_ceil(tc);
    let dst = OutPtr::new(out);
    let run = |ci: usize, bufs: &mut (Scratch, Scratch, Vec<f32>), par: Par| {
        let t0 = ci * tc;
        let n = tc.min(tiles - t0);
        let v = bufs.0.resize(16 * n * c);
        transform_input(x, t0, n, v, &mut bufs.2);
        let m = bufs.1.resize(16 * n * cout);
        for k in 0..16 {
            let a = MatRef::row_major(&v[k * n * c..(k + 1) * n * c], n, c);
            u[k].gemm(
                a,
                &mut m[k * n * cout..(k + 1) * n * cout],
                cout,
                false,
                par,
            );
        }
        transform_output(m, t0, n, (x.h, x.w), cout, epi, &dst, &mut bufs.2);
    };
    if nchunks >= 2 && threads > 1 {
        (0..nchunks).into_par_iter().for_each_init(
            || (Scratch::new(), Scratch::new(), Vec::new()),
            |b, ci| run(ci, b, Par::Serial),
        );
    } else {
        let mut b = (Scratch::new(), Scratch::new(), Vec::new());
        for ci in 0..nchunks {
            run(ci, &mut b, Par::Threads(threads));
        }
    }
}

per_path! {
/// Transform of the output-gradient tiles for the weight gradient: each 2x2 tile `g` of `dy`
/// becomes `A g A^T` (4x4), `A = [[1,0],[1,1],[1,-1],[0,-1]]`; written as `[16][tc][c]`.
fn transform_dy(dy: &Tensor, t0: usize, tc: usize, u: &mut [f32], scratch: &mut Vec<f32>) {
    let (h, w, c) = (dy.h, dy.w, dy.c);
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    scratch.resize(9 * c, 0.0);
    let (r, zeros) = scratch.split_at_mut(8 * c);
    zeros.fill(0.0);
    for t in 0..tc {
        let tile = t0 + t;
        let (img, rem) = (tile / (th * tw), tile % (th * tw));
        let (y0, x0) = (2 * (rem / tw), 2 * (rem % tw));
        let mut g: [&[f32]; 4] = [&zeros[..]; 4];
        for i in 0..2 {
            for j in 0..2 {
                if y0 + i < h && x0 + j < w {
                    let s = ((img * h + y0 + i) * w + x0 + j) * c;
                    g[i * 2 + j] = &dy.data[s..s + c];
                }
            }
        }
        // Rows: r = A g (4 x 2).
        for j in 0..2 {
            let (g0, g1) = (g[j], g[2 + j]);
            r[j * c..(j + 1) * c].copy_from_slice(g0);
            map2(&mut r[(2 + j) * c..(3 + j) * c], g0, g1, |p, q| p + q);
            map2(&mut r[(4 + j) * c..(5 + j) * c], g0, g1, |p, q| p - q);
            map2(&mut r[(6 + j) * c..(7 + j) * c], g1, g1, |_, q| -q);
        }
        // Columns: (A g) A^T (4 x 4).
        for i in 0..4 {
            let (a, b) = (
                &r[i * 2 * c..(i * 2 + 1) * c],
                &r[(i * 2 + 1) * c..(i * 2 + 2) * c],
            );
            let out = |k: usize| ((i * 4 + k) * tc + t) * c;
            u[out(0)..out(0) + c].copy_from_slice(a);
            map2(&mut u[out(1)..out(1) + c], a, b, |p, q| p + q);
            map2(&mut u[out(2)..out(2) + c], a, b, |p, q| p - q);
            map2(&mut u[out(3)..out(3) + c], b, b, |_, q| -q);
        }
    }
}
}

/// Weight gradient by Winograd: `dW = G^T [ sum over tiles (B^T d B) ⊙ (A g A^T) ] G` for each
/// channel pair (the transposition of F(2x2, 3x3)), returned in the im2col packed layout
/// `[(tap * cin + ci) x cout]`. The 16 sums over tiles are GEMMs; workers own fixed ranges of
/// chunks and are added in order, so results are repeatable for a thread count.
pub fn backward_weights(precision: Precision, x: &Tensor, dy: &Tensor, threads: usize) -> Vec<f32> {
    let (cin, cout) = (x.c, dy.c);
    assert_eq!(
        (x.n, x.h, x.w),
        (dy.n, dy.h, dy.w),
        "winograd wgrad: x and dy differ in size"
    );
    let tiles = tile_count(x.n, x.h, x.w);
    let tc = chunk_tiles(cin, cout);
    let nchunks = tiles.div_ceil(tc);
    let accumulate = |first: usize, last: usize, par: Par| {
        let mut m = vec![0.0f32; 16 * cin * cout];
        let (mut vb, mut ub, mut scratch) = (Scratch::new(), Scratch::new(), Vec::new());
        for ci in first..last {
            let t0 = ci * tc;
            let n = tc.min(tiles - t0);
            let v = vb.resize(16 * n * cin);
            transform_input(x, t0, n, v, &mut scratch);
            let u = ub.resize(16 * n * cout);
            transform_dy(dy, t0, n, u, &mut scratch);
            for k in 0..16 {
                let a = MatRef::row_major(&v[k * n * cin..(k + 1) * n * cin], n, cin).t();
                let b = MatRef::row_major(&u[k * n * cout..(k + 1) * n * cout], n, cout);
                gemm_in(
                    precision,
                    a,
                    b,
                    &mut m[k * cin * cout..(k + 1) * cin * cout],
                    cout,
                    ci > first,
                    par,
                );
            }
        }
        m
    };
    let m = super::parallel::sum_over_chunks(nchunks, threads, accumulate);
    // dW = G^T M G per channel pair, G = [[1,0,0],[.5,.5,.5],[.5,-.5,.5],[0,0,1]].
    let g = [
        [1.0f32, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let mut out = vec![0.0f32; 9 * cin * cout];
    for ci in 0..cin {
        for co in 0..cout {
            let at = |xi: usize| m[(xi * cin + ci) * cout + co];
            for ky in 0..3 {
                for kx in 0..3 {
                    let mut s = 0.0f32;
                    for i in 0..4 {
                        if g[i][ky] == 0.0 {
                            continue;
                        }
                        for j in 0..4 {
                            if g[j][kx] != 0.0 {
                                s += g[i][ky] * at(i * 4 + j) * g[j][kx];
                            }
                        }
                    }
                    out[((ky * 3 + kx) * cin + ci) * cout + co] = s;
                }
            }
        }
    }
    out
}
