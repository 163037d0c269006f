//! A dense f32 activation tensor in NHWC layout (channels last).

use super::NnError;

/// Activations of a batch: `n` images of `h` x `w` pixels with `c` channels, channels fastest.
/// NHWC makes every convolution a GEMM with pixels as rows, the shape CPU GEMMs run fastest on.
#[derive(Debug, PartialEq)]
pub struct Tensor {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub data: Vec<f32>,
}

/// A copy's buffer comes from the pool too: every tensor's buffer goes back to the pool when it
/// is dropped, so one allocated elsewhere would join the pool for good (measured: a copy of
/// each inference batch's input kept the serving daemon growing by ~25 MiB a series).
impl Clone for Tensor {
    fn clone(&self) -> Self {
        let mut data = super::buffer::take_any(self.data.len());
        data.copy_from_slice(&self.data);
        Tensor {
            n: self.n,
            h: self.h,
            w: self.w,
            c: self.c,
            data,
        }
    }
}

impl Tensor {
    /// A zero-filled tensor.
    pub fn zeros(n: usize, h: usize, w: usize, c: usize) -> Self {
        Tensor {
            n,
            h,
            w,
            c,
            data: super::buffer::take_zeroed(n * h * w * c),
        }
    }

    /// A tensor whose contents are unspecified, for outputs that are completely overwritten
    /// (saves clearing a recycled buffer).
    pub fn uninit(n: usize, h: usize, w: usize, c: usize) -> Self {
        Tensor {
            n,
            h,
            w,
            c,
            data: super::buffer::take_any(n * h * w * c),
        }
    }

    /// Wraps NHWC data after checking its length.
    pub fn from_nhwc(
        n: usize,
        h: usize,
        w: usize,
        c: usize,
        data: Vec<f32>,
    ) -> Result<Self, NnError> {
        if data.len() != n * h * w * c {
            return Err(NnError::Shape(format!(
                "{} values given for a {n}x{h}x{w}x{c} tensor ({} expected)",
                data.len(),
                n * h * w * c
            )));
        }
        Ok(Tensor { n, h, w, c, data })
    }

    /// Converts NCHW data (PyTorch's layout) to NHWC.
    pub fn from_nchw(n: usize, c: usize, h: usize, w: usize, src: &[f32]) -> Result<Self, NnError> {
        if src.len() != n * c * h * w {
            return Err(NnError::Shape(format!(
                "{} values for NCHW {n}x{c}x{h}x{w}",
                src.len()
            )));
        }
        let mut t = Tensor::zeros(n, h, w, c);
        for b in 0..n {
            for ch in 0..c {
                let plane = &src[(b * c + ch) * h * w..][..h * w];
                for (p, v) in plane.iter().enumerate() {
                    t.data[(b * h * w + p) * c + ch] = *v;
                }
            }
        }
        Ok(t)
    }

    /// The same values in NCHW order, for comparison with PyTorch and for writing masks.
    pub fn to_nchw(&self) -> Vec<f32> {
        let (n, h, w, c) = (self.n, self.h, self.w, self.c);
        let mut out = vec![0.0; self.data.len()];
        for b in 0..n {
            for p in 0..h * w {
                for ch in 0..c {
                    out[(b * c + ch) * h * w + p] = self.data[(b * h * w + p) * c + ch];
                }
            }
        }
        out
    }

    /// Number of pixels over the whole batch (the GEMM row count of a convolution).
    pub fn pixels(&self) -> usize {
        self.n * self.h * self.w
    }

    /// Shape as a readable string for error messages.
    pub fn shape_str(&self) -> String {
        format!("{}x{}x{}x{} (NHWC)", self.n, self.h, self.w, self.c)
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        super::buffer::give(std::mem::take(&mut self.data));
    }
}
