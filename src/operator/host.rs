//! The host copy of an operator's arrays. A CPU operator holds all of them (they *are* the
//! operator); a device operator holds none after its construction and copies each from the device
//! the first time it is asked for (an accessor, a triplet export, the empty cells of a fit with
//! missing samples, the means of a conservative fit), then keeps it.

use super::PsfResampler;
use crate::backend::DeviceValues;
use crate::real::Real;
use crate::sparse::{CellLinks, SampleLinks};
use std::sync::OnceLock;

/// The arrays, each set once.
#[derive(Debug, Clone)]
pub(crate) struct HostArrays<F: Real> {
    pub samples: OnceLock<SampleLinks<F>>,
    pub cells: OnceLock<CellLinks<F>>,
    /// Distances of the links (m), N×npt by position, +∞ where missing.
    pub d_m: OnceLock<Vec<F>>,
    /// Per-position areas.
    pub area: OnceLock<Vec<F>>,
    /// `Dx` per cell, `Dy` per position.
    pub dx: OnceLock<Vec<F>>,
    pub dy: OnceLock<Vec<F>>,
}

impl<F: Real> HostArrays<F> {
    /// Nothing yet (a device operator).
    pub fn none() -> Self {
        HostArrays {
            samples: OnceLock::new(),
            cells: OnceLock::new(),
            d_m: OnceLock::new(),
            area: OnceLock::new(),
            dx: OnceLock::new(),
            dy: OnceLock::new(),
        }
    }

    /// All of them (a CPU operator, or weights computed on the host).
    pub fn all(
        samples: SampleLinks<F>,
        cells: CellLinks<F>,
        d_m: Vec<F>,
        area: Vec<F>,
        dx: Vec<F>,
        dy: Vec<F>,
    ) -> Self {
        let h = Self::none();
        let _ = (h.samples.set(samples), h.cells.set(cells), h.d_m.set(d_m));
        let _ = (h.area.set(area), h.dx.set(dx), h.dy.set(dy));
        h
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let f = std::mem::size_of::<F>();
        let vals = |v: &OnceLock<Vec<F>>| v.get().map_or(0, |v| v.len() * f);
        self.samples.get().map_or(0, |s| s.hi.len() * (4 + f))
            + self.cells.get().map_or(0, |c| c.ptr.len() * 8 + c.sample.len() * (4 + f))
            + vals(&self.d_m)
            + vals(&self.area)
            + vals(&self.dx)
            + vals(&self.dy)
    }
}

/// A copy from the device failed: the accessors have no error to return, so they panic (across the
/// C ABI: an error status); a fit returns the error (`try_*`).
fn lost(what: &str, e: crate::Error) -> ! {
    panic!("copying {what} from the device failed: {e}")
}

/// The value of `cell`, set from `make` the first time (a failure leaves it unset).
fn get_or_try<T>(cell: &OnceLock<T>, make: impl FnOnce() -> crate::Result<T>) -> crate::Result<&T> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = make()?;
    Ok(cell.get_or_init(|| v))
}

impl<F: Real> PsfResampler<F> {
    /// The links by sample position (`hi`, `MT`).
    pub(crate) fn host_samples(&self) -> &SampleLinks<F> {
        get_or_try(&self.host.samples, || self.placed.sample_links()).unwrap_or_else(|e| lost("the links", e))
    }
    /// The links by cell (CSR, `M`).
    pub(crate) fn host_cells(&self) -> &CellLinks<F> {
        self.try_host_cells().unwrap_or_else(|e| lost("the links by cell", e))
    }
    pub(crate) fn try_host_cells(&self) -> crate::Result<&CellLinks<F>> {
        get_or_try(&self.host.cells, || self.placed.cell_links())
    }
    /// The distances of the links.
    pub(crate) fn host_d_m(&self) -> &[F] {
        self.host_values(&self.host.d_m, DeviceValues::DistM).unwrap_or_else(|e| lost("the distances", e))
    }
    /// The per-position areas.
    pub(crate) fn host_area(&self) -> &[F] {
        self.try_host_area().unwrap_or_else(|e| lost("the areas", e))
    }
    pub(crate) fn try_host_area(&self) -> crate::Result<&[F]> {
        self.host_values(&self.host.area, DeviceValues::Area)
    }
    /// `Dx`.
    pub(crate) fn host_dx(&self) -> &[F] {
        self.host_values(&self.host.dx, DeviceValues::Dx).unwrap_or_else(|e| lost("Dx", e))
    }
    /// `Dy`.
    pub(crate) fn host_dy(&self) -> &[F] {
        self.host_values(&self.host.dy, DeviceValues::Dy).unwrap_or_else(|e| lost("Dy", e))
    }
    /// The host copy in `cell` of the device's `which`, made the first time.
    fn host_values<'a>(&'a self, cell: &'a OnceLock<Vec<F>>, which: DeviceValues) -> crate::Result<&'a [F]> {
        get_or_try(cell, || self.placed.values(which)).map(Vec::as_slice)
    }
}

/// An operator's links, distances, areas and cells moved out of it: for a caller that keeps a part
/// of them and drops the rest (the distributed build, feature `mpi`) without holding two copies.
#[allow(dead_code)]
pub(crate) struct LinkParts<F: Real> {
    pub cell_ids: Vec<u64>,
    pub samples: SampleLinks<F>,
    pub cells: CellLinks<F>,
    pub d_m: Vec<F>,
    pub area: Vec<F>,
    pub dx: Vec<F>,
}

impl<F: Real> PsfResampler<F> {
    /// The operator's links and weights, moved out (a device operator's copied from the device).
    /// Errors: a copy from the device failed.
    #[allow(dead_code)]
    pub(crate) fn into_links(mut self) -> crate::Result<LinkParts<F>> {
        self.try_host_cells()?;
        let _ = (get_or_try(&self.host.samples, || self.placed.sample_links())?, self.try_host_area()?);
        let _ = (
            self.host_values(&self.host.d_m, DeviceValues::DistM)?,
            self.host_values(&self.host.dx, DeviceValues::Dx)?,
        );
        let h = &mut self.host;
        let taken = (h.samples.take(), h.cells.take(), h.d_m.take(), h.area.take(), h.dx.take());
        let (Some(samples), Some(cells), Some(d_m), Some(area), Some(dx)) = taken else {
            unreachable!("each set above")
        };
        Ok(LinkParts { cell_ids: std::mem::take(&mut self.cell_ids), samples, cells, d_m, area, dx })
    }
}
