//! A zero-padded input plane split into `s²` phase planes, the layout the direct convolution
//! kernels read.
//!
//! Phase plane `(py, px)` holds `x_pad[s·r + py, s·c + px]` at `(r, c)`, `phase_w` columns wide.
//! Tap `(ky, kx)` of output `(oy, ox)` then reads phase plane `(ky % s, kx % s)` at
//! `(oy + ky / s, ox + kx / s)`: consecutive outputs of a row read consecutive values, whatever
//! the stride, and for all outputs of the plane at once one contiguous run of
//! `out_h · phase_w` values (the columns past `out_w` of each row are computed and dropped).

use super::Padding2d;

/// The sizes of one convolution as seen from one input plane.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlaneGeometry {
    pub h: usize,
    pub w: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding2d,
    pub out_h: usize,
    pub out_w: usize,
}

impl PlaneGeometry {
    /// Columns of each phase plane.
    pub fn phase_w(&self) -> usize {
        self.out_w + (self.kernel - 1) / self.stride
    }

    /// Values per phase plane. One spare row: the last tap's run over the wide output grid may
    /// reach `kx / s` values past the last full row.
    pub fn phase_len(&self) -> usize {
        (self.out_h + (self.kernel - 1) / self.stride + 1) * self.phase_w()
    }

    /// Values of all `s²` phase planes of one input plane.
    pub fn phased_len(&self) -> usize {
        self.stride * self.stride * self.phase_len()
    }

    /// Where tap `(ky, kx)` of output `(0, 0)` lies in the phased plane; output `(oy, ox)`
    /// reads `oy · phase_w + ox` values further.
    pub fn tap_offset(&self, ky: usize, kx: usize) -> usize {
        let s = self.stride;
        ((ky % s) * s + kx % s) * self.phase_len() + (ky / s) * self.phase_w() + kx / s
    }
}

/// Writes `in_plane` `(h, w)` into `dst` (`g.phased_len()` values) as zero-padded phase planes.
/// Every value of `dst` is written once: the padding with zeros, the rest with the input.
pub(crate) fn fill_phased(in_plane: &[f32], dst: &mut [f32], g: &PlaneGeometry) {
    let (top, _, left, _) = g.padding;
    let s = g.stride;
    let (phase_w, phase_len) = (g.phase_w(), g.phase_len());
    for (phase, plane) in dst.chunks_exact_mut(phase_len).enumerate() {
        let (py, px) = (phase / s, phase % s);
        // Columns c with 0 ≤ s·c + px − left < w.
        let first_c = left.saturating_sub(px).div_ceil(s).min(phase_w);
        let end_c = (g.w + left)
            .checked_sub(px)
            .map_or(0, |reach| reach.div_ceil(s))
            .min(phase_w);
        for (r, row) in plane.chunks_exact_mut(phase_w).enumerate() {
            let source = (s * r + py).checked_sub(top).filter(|&iy| iy < g.h);
            let (Some(iy), true) = (source, first_c < end_c) else {
                row.fill(0.0);
                continue;
            };
            let in_row = &in_plane[iy * g.w..(iy + 1) * g.w];
            let first_x = s * first_c + px - left;
            row[..first_c].fill(0.0);
            row[end_c..].fill(0.0);
            let dst = &mut row[first_c..end_c];
            if s == 1 {
                dst.copy_from_slice(&in_row[first_x..first_x + dst.len()]);
            } else {
                dst.iter_mut()
                    .zip(in_row[first_x..].iter().step_by(s))
                    .for_each(|(d, &v)| *d = v);
            }
        }
    }
}
