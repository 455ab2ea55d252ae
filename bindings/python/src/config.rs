//! Keyword arguments to the library's [`ModelConfig`] and back, through its JSON form: the
//! keyword names are the configuration's JSON keys, missing keys take the library's defaults and
//! unknown keys are refused by the library's deserializer (so this file holds no list of options).

use bpgg::model::ModelConfig;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

use crate::error::{to_py, value_error};

/// The configuration given by keyword arguments, validated.
pub fn config_from_kwargs(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<ModelConfig> {
    let json = match kwargs {
        Some(dict) => to_json(dict.as_any(), "")?,
        None => Value::Object(Map::new()),
    };
    let config: ModelConfig = serde_json::from_value(json)
        .map_err(|e| value_error(format!("invalid model option: {e}")))?;
    config.validate().map_err(to_py)?;
    Ok(config)
}

/// A Python value (dicts, lists, tuples, strings, paths, numbers, booleans, None) as JSON;
/// `at` names the option in errors (`map.sigma_px`).
fn to_json(obj: &Bound<'_, PyAny>, at: &str) -> PyResult<Value> {
    let named = |what: &str| {
        if at.is_empty() {
            what.to_string()
        } else {
            format!("option `{at}`: {what}")
        }
    };
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(Value::from(v));
        }
        if let Ok(v) = obj.extract::<u64>() {
            return Ok(Value::from(v));
        }
        return Err(value_error(named("integer out of range")));
    }
    if obj.is_instance_of::<PyFloat>() {
        let v: f64 = obj.extract()?;
        return Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| value_error(named(&format!("{v} is not a finite number"))));
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(Value::String(obj.extract()?));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (key, value) in dict.iter() {
            let key: String = key
                .extract()
                .map_err(|_| PyTypeError::new_err(named("option names must be strings")))?;
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            map.insert(key, to_json(&value, &path)?);
        }
        return Ok(Value::Object(map));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let items = obj
            .try_iter()?
            .enumerate()
            .map(|(i, item)| to_json(&item?, &format!("{at}[{i}]")))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(Value::Array(items));
    }
    // os.PathLike (a weight file).
    if let Ok(path) = obj.call_method0("__fspath__") {
        return Ok(Value::String(path.extract()?));
    }
    let kind = obj.get_type().name()?.to_string();
    Err(PyTypeError::new_err(named(&format!(
        "a {kind} cannot be a model option (use numbers, strings, lists and dicts)"
    ))))
}

/// JSON as Python objects (dicts, lists, str, int, float, bool, None).
pub fn json_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|v| json_to_py(py, v))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// A configuration as a Python dict of its JSON form.
pub fn config_to_py<'py>(py: Python<'py>, config: &ModelConfig) -> PyResult<Bound<'py, PyAny>> {
    let json = serde_json::to_value(config).expect("a ModelConfig serialises to JSON");
    json_to_py(py, &json)
}
