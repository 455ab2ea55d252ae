//! numpy arrays in and out. Every input is checked (type, dtype, rank, channels, size) and copied
//! into the library's types while the GIL is held; every output is a fresh array that owns the
//! library's buffer (no copy).
//!
//! Images are `uint8` `(H, W)` (gray), `(H, W, 1)` or `(H, W, 3)` (RGB). Gray pixels are
//! replicated into the three channels, as the `image` crate turns a gray PNG into RGB for the
//! CLI, so the same pixels give the same map through either door. Masks are `bool` or `uint8`
//! `(H, W)`: a `uint8` pixel is defect when it is greater than 127, the rule of an 8-bit mask PNG.

use bpgg::data::float_map::FloatMap;
use bpgg::data::image_io::{Mask, MASK_THRESHOLD};
use image::RgbImage;
use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray2, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::error::value_error;

/// The numpy array behind `obj`, or a `TypeError` naming it.
fn as_array<'a, 'py>(
    obj: &'a Bound<'py, PyAny>,
    name: &str,
) -> PyResult<&'a Bound<'py, PyUntypedArray>> {
    obj.cast::<PyUntypedArray>().map_err(|_| {
        let kind = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "object".into());
        PyTypeError::new_err(format!("{name}: expected a numpy array, got {kind}"))
    })
}

/// The elements of `array` in row-major order, checked to be of dtype `T`.
fn elements<T: numpy::Element + Copy>(
    array: &Bound<'_, PyUntypedArray>,
    name: &str,
    expected: &str,
) -> PyResult<Vec<T>> {
    let py = array.py();
    if !array.dtype().is_equiv_to(&numpy::dtype::<T>(py)) {
        return Err(value_error(format!(
            "{name}: dtype {}, expected {expected}",
            array.dtype()
        )));
    }
    let typed = array.cast::<PyArrayDyn<T>>()?.readonly();
    Ok(match typed.as_slice() {
        Ok(slice) => slice.to_vec(),
        Err(_) => typed.as_array().iter().copied().collect(),
    })
}

/// `(height, width)` of a 2-D array as `u32`s, refusing empty and oversized sides.
fn image_size(shape: &[usize], name: &str) -> PyResult<(u32, u32)> {
    let (h, w) = (shape[0], shape[1]);
    if h == 0 || w == 0 {
        return Err(value_error(format!(
            "{name}: image has no pixels ({w}x{h})"
        )));
    }
    match (u32::try_from(h), u32::try_from(w)) {
        (Ok(h), Ok(w)) => Ok((h, w)),
        _ => Err(value_error(format!("{name}: {w}x{h} is too large"))),
    }
}

/// One image: `uint8` `(H, W)`, `(H, W, 1)` or `(H, W, 3)`.
pub fn image_from_py(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<RgbImage> {
    let array = as_array(obj, name)?;
    let shape = array.shape().to_vec();
    let channels = match shape.as_slice() {
        [_, _] | [_, _, 1] => 1,
        [_, _, 3] => 3,
        _ => {
            return Err(value_error(format!(
                "{name}: shape {shape:?} is not an image; expected (H, W) or (H, W, 3) uint8"
            )))
        }
    };
    let (h, w) = image_size(&shape, name)?;
    let pixels = elements::<u8>(array, name, "uint8 (0..=255)")?;
    let rgb = if channels == 3 {
        pixels
    } else {
        pixels.iter().flat_map(|&v| [v, v, v]).collect()
    };
    Ok(RgbImage::from_raw(w, h, rgb).expect("buffer of h * w * 3 bytes"))
}

/// A list (or any iterable) of images, or an `(N, H, W, 3)` array. A single image array is
/// refused rather than iterated row by row.
pub fn images_from_py(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<RgbImage>> {
    if let Ok(array) = obj.cast::<PyUntypedArray>() {
        let object_vector = array.ndim() == 1 && array.dtype().kind() == b'O';
        if array.ndim() != 4 && !object_vector {
            return Err(value_error(format!(
                "{name}: a single array of shape {:?}; pass a list of images (wrap one image in \
                 a list) or an (N, H, W, 3) array",
                array.shape()
            )));
        }
    }
    if obj.is_instance_of::<pyo3::types::PyString>() || obj.is_instance_of::<pyo3::types::PyBytes>()
    {
        return Err(PyTypeError::new_err(format!(
            "{name}: expected a list of numpy images, got a string"
        )));
    }
    let iter = obj
        .try_iter()
        .map_err(|_| PyTypeError::new_err(format!("{name}: expected a list of numpy images")))?;
    iter.enumerate()
        .map(|(i, item)| image_from_py(&item?, &format!("{name}[{i}]")))
        .collect()
}

/// One mask: `bool` or `uint8` `(H, W)` (`uint8`: defect where > 127).
pub fn mask_from_py(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Mask> {
    let array = as_array(obj, name)?;
    let shape = array.shape().to_vec();
    if shape.len() != 2 {
        return Err(value_error(format!(
            "{name}: shape {shape:?} is not a mask; expected (H, W) bool or uint8"
        )));
    }
    let (height, width) = image_size(&shape, name)?;
    let py = array.py();
    let pixels = if array.dtype().is_equiv_to(&numpy::dtype::<bool>(py)) {
        elements::<bool>(array, name, "bool")?
    } else {
        let values = elements::<u8>(array, name, "bool or uint8")?;
        let max = values.iter().copied().max().unwrap_or(0);
        if max == 1 {
            // 0/1 labels would all be normal under the > 127 rule: refuse instead of guessing.
            return Err(value_error(format!(
                "{name}: uint8 mask holds only 0 and 1, but a uint8 mask is defect where > \
                 {MASK_THRESHOLD} (as in a mask PNG); pass mask.astype(bool) or mask * 255"
            )));
        }
        values.into_iter().map(|v| v > MASK_THRESHOLD).collect()
    };
    Ok(Mask {
        width,
        height,
        pixels,
    })
}

/// One anomaly map: `float32` or `float64` (converted) `(H, W)`.
pub fn map_from_py(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<FloatMap> {
    let array = as_array(obj, name)?;
    let shape = array.shape().to_vec();
    if shape.len() != 2 {
        return Err(value_error(format!(
            "{name}: shape {shape:?} is not a map; expected (H, W) float32"
        )));
    }
    let (height, width) = image_size(&shape, name)?;
    let py = array.py();
    let data = if array.dtype().is_equiv_to(&numpy::dtype::<f64>(py)) {
        elements::<f64>(array, name, "float32")?
            .into_iter()
            .map(|v| v as f32)
            .collect()
    } else {
        elements::<f32>(array, name, "float32 or float64")?
    };
    Ok(FloatMap {
        width: width as usize,
        height: height as usize,
        data,
    })
}

/// A list (or any iterable) of 2-D arrays, or an `(N, H, W)` array, converted one by one, each
/// named `name[i]` in errors. A single 2-D array is refused rather than iterated row by row.
pub fn list_from_py<T>(
    obj: &Bound<'_, PyAny>,
    name: &str,
    convert: impl Fn(&Bound<'_, PyAny>, &str) -> PyResult<T>,
) -> PyResult<Vec<T>> {
    if let Ok(array) = obj.cast::<PyUntypedArray>() {
        let object_vector = array.ndim() == 1 && array.dtype().kind() == b'O';
        if array.ndim() != 3 && !object_vector {
            return Err(value_error(format!(
                "{name}: a single array of shape {:?}; pass a list of (H, W) arrays or an \
                 (N, H, W) array",
                array.shape()
            )));
        }
    }
    if obj.is_instance_of::<pyo3::types::PyString>() || obj.is_instance_of::<pyo3::types::PyBytes>()
    {
        return Err(PyTypeError::new_err(format!(
            "{name}: expected a list of numpy arrays, got a string"
        )));
    }
    let iter = obj
        .try_iter()
        .map_err(|_| PyTypeError::new_err(format!("{name}: expected a list of numpy arrays")))?;
    iter.enumerate()
        .map(|(i, item)| convert(&item?, &format!("{name}[{i}]")))
        .collect()
}

/// A map as a `float32` `(H, W)` array that owns the map's buffer.
pub fn map_to_py(py: Python<'_>, map: FloatMap) -> Bound<'_, PyArray2<f32>> {
    Array2::from_shape_vec((map.height, map.width), map.data)
        .expect("map buffer holds height * width values")
        .into_pyarray(py)
}

/// A mask as a `bool` `(H, W)` array.
pub fn mask_to_py(py: Python<'_>, mask: Mask) -> Bound<'_, PyArray2<bool>> {
    Array2::from_shape_vec((mask.height as usize, mask.width as usize), mask.pixels)
        .expect("mask buffer holds height * width values")
        .into_pyarray(py)
}

/// An RGB image as a `uint8` `(H, W, 3)` array.
pub fn image_to_py(py: Python<'_>, image: RgbImage) -> Bound<'_, numpy::PyArray3<u8>> {
    let (w, h) = image.dimensions();
    numpy::ndarray::Array3::from_shape_vec((h as usize, w as usize, 3), image.into_raw())
        .expect("image buffer holds height * width * 3 bytes")
        .into_pyarray(py)
}
