//! Optimisers whose whole state is a list of tensors, so a checkpoint resumes exactly.

use std::str::FromStr;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// AdamW (β₁ = 0.9, β₂ = 0.999, ε = 1e-8, decoupled weight decay).
    AdamW,
    /// SGD with momentum 0.9 and L2 weight decay (PANet's choice).
    Sgd,
}

impl FromStr for OptimizerKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "adamw" => Ok(Self::AdamW),
            "sgd" => Ok(Self::Sgd),
            _ => Err(Error::InvalidConfig(format!(
                "unknown optimizer `{s}`; choose adamw or sgd"
            ))),
        }
    }
}

impl std::fmt::Display for OptimizerKind {
    /// The name [`OptimizerKind::from_str`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AdamW => "adamw",
            Self::Sgd => "sgd",
        })
    }
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;
const SGD_MOMENTUM: f64 = 0.9;

/// The optimiser state: one or two moment tensors per parameter and the step count.
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    weight_decay: f64,
    /// AdamW: first moments; SGD: momentum buffers.
    first: Vec<Tensor>,
    /// AdamW: second moments; SGD: unused (empty).
    second: Vec<Tensor>,
    step: u64,
}

impl Optimizer {
    /// Zero state for `params`.
    pub fn new(kind: OptimizerKind, weight_decay: f64, params: &[Var]) -> Result<Self> {
        let zeros = |p: &Var| p.as_tensor().zeros_like();
        let first = params
            .iter()
            .map(zeros)
            .collect::<candle_core::Result<_>>()?;
        let second = match kind {
            OptimizerKind::AdamW => params
                .iter()
                .map(zeros)
                .collect::<candle_core::Result<_>>()?,
            OptimizerKind::Sgd => Vec::new(),
        };
        Ok(Self {
            kind,
            weight_decay,
            first,
            second,
            step: 0,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update of every parameter with its gradient (a parameter without a gradient is left
    /// as it is, its moments untouched).
    pub fn step(
        &mut self,
        params: &[Var],
        grads: &candle_core::backprop::GradStore,
        lr: f64,
    ) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        for (i, p) in params.iter().enumerate() {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let theta = p.as_tensor();
            match self.kind {
                OptimizerKind::AdamW => {
                    let m = ((&self.first[i] * BETA1)? + (g * (1.0 - BETA1))?)?;
                    let v = ((&self.second[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
                    let m_hat = (&m / (1.0 - BETA1.powi(t)))?;
                    let v_hat = (&v / (1.0 - BETA2.powi(t)))?;
                    let update = (m_hat / (v_hat.sqrt()? + ADAM_EPS)?)?;
                    let decayed = (theta * (1.0 - lr * self.weight_decay))?;
                    p.set(&(decayed - (update * lr)?)?)?;
                    self.first[i] = m;
                    self.second[i] = v;
                }
                OptimizerKind::Sgd => {
                    let g = (g + (theta * self.weight_decay)?)?;
                    let buf = ((&self.first[i] * SGD_MOMENTUM)? + g)?;
                    p.set(&(theta - (&buf * lr)?)?)?;
                    self.first[i] = buf;
                }
            }
        }
        Ok(())
    }

    /// The state as named tensors (`optim.m.{i}`, `optim.v.{i}`) for a checkpoint.
    pub fn named_state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .first
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("optim.m.{i}"), t.clone()))
            .collect();
        out.extend(
            self.second
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("optim.v.{i}"), t.clone())),
        );
        out
    }

    /// Restores the state written by [`Optimizer::named_state`] after `step` steps; every
    /// tensor must be present with its parameter's shape. `source` names the file in errors.
    pub fn restore(
        &mut self,
        source: &std::path::Path,
        step: u64,
        get: impl Fn(&str) -> Option<Tensor>,
    ) -> Result<()> {
        let load = |name: String, like: &Tensor| -> Result<Tensor> {
            let t = get(&name).ok_or_else(|| {
                Error::invalid_data(source, format!("optimizer state `{name}` is missing"))
            })?;
            if t.dims() != like.dims() {
                return Err(Error::invalid_data(
                    source,
                    format!(
                        "optimizer state `{name}` has shape {:?}, expected {:?}",
                        t.dims(),
                        like.dims()
                    ),
                ));
            }
            Ok(t)
        };
        for i in 0..self.first.len() {
            self.first[i] = load(format!("optim.m.{i}"), &self.first[i])?;
        }
        for i in 0..self.second.len() {
            self.second[i] = load(format!("optim.v.{i}"), &self.second[i])?;
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Minimises (x − 3)² from x = 0; both rules must get close to 3.
    #[test]
    fn both_rules_minimise_a_quadratic() {
        for (kind, lr) in [(OptimizerKind::AdamW, 0.1), (OptimizerKind::Sgd, 0.02)] {
            let x = Var::new(&[0f32], &Device::Cpu).unwrap();
            let params = vec![x.clone()];
            let mut opt = Optimizer::new(kind, 0.0, &params).unwrap();
            for _ in 0..300 {
                let loss = (x.as_tensor() - 3.0)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap();
                let grads = loss.backward().unwrap();
                opt.step(&params, &grads, lr).unwrap();
            }
            let v = x.as_tensor().to_vec1::<f32>().unwrap()[0];
            assert!((v - 3.0).abs() < 0.05, "{kind:?} ended at {v}");
            assert_eq!(opt.steps(), 300);
        }
    }
}
