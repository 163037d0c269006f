//! The U-Net's tensors in PyTorch's names and layouts (conv OIHW, transposed conv IOHW).
//!
//! One struct serves for parameters, gradients and optimiser moments, so every loop over
//! "all tensors" (saving, AdamW, gradient checks) goes through one visitor and cannot miss one.

use super::{rng::Rng, NnError, UNetConfig};

/// What a tensor is, which decides whether it is trained and whether it gets weight decay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A 4-D convolution weight: trained, with weight decay.
    Weight4d,
    /// A 1-D trained tensor (BatchNorm affine, biases): no weight decay.
    Vector,
    /// A BatchNorm running statistic: updated by forward passes, never by the optimiser.
    RunningStat,
}

/// BatchNorm parameters and running statistics of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
}

/// `[3x3 conv -> BN -> ReLU] x 2`, the repeated unit of the U-Net.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub cin: usize,
    pub cout: usize,
    /// OIHW: `cout x cin x 3 x 3`.
    pub conv1: Vec<f32>,
    pub bn1: BatchNorm,
    /// OIHW: `cout x cout x 3 x 3`.
    pub conv2: Vec<f32>,
    pub bn2: BatchNorm,
}

/// 2x2 stride-2 transposed convolution with bias (IOHW: `cin x cout x 2 x 2`).
#[derive(Clone, Debug, PartialEq)]
pub struct UpConv {
    pub cin: usize,
    pub cout: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// All tensors of the U-Net.
#[derive(Clone, Debug, PartialEq)]
pub struct UNetParams {
    pub cfg: UNetConfig,
    pub enc: Vec<Block>,
    pub up: Vec<UpConv>,
    pub dec: Vec<Block>,
    /// OIHW `classes x base x 1 x 1`.
    pub head_weight: Vec<f32>,
    pub head_bias: Vec<f32>,
}

impl BatchNorm {
    fn new(c: usize, fill: f32) -> Self {
        BatchNorm {
            weight: vec![fill; c],
            bias: vec![0.0; c],
            running_mean: vec![0.0; c],
            running_var: vec![fill; c],
        }
    }
}

impl Block {
    fn zeros(cin: usize, cout: usize, fill: f32) -> Self {
        Block {
            cin,
            cout,
            conv1: vec![0.0; cout * cin * 9],
            bn1: BatchNorm::new(cout, fill),
            conv2: vec![0.0; cout * cout * 9],
            bn2: BatchNorm::new(cout, fill),
        }
    }
}

impl UNetParams {
    /// All-zero tensors of the right shapes (BatchNorm scale and running variance zero too):
    /// the starting point of gradients and optimiser moments.
    pub fn zeros(cfg: &UNetConfig) -> Self {
        Self::filled(cfg, 0.0)
    }

    fn filled(cfg: &UNetConfig, bn_fill: f32) -> Self {
        let ch = |i| cfg.channels(i);
        let enc = (0..=cfg.depth)
            .map(|i| {
                Block::zeros(
                    if i == 0 { cfg.in_channels } else { ch(i - 1) },
                    ch(i),
                    bn_fill,
                )
            })
            .collect();
        let up = (0..cfg.depth)
            .map(|i| UpConv {
                cin: ch(i + 1),
                cout: ch(i),
                weight: vec![0.0; ch(i + 1) * ch(i) * 4],
                bias: vec![0.0; ch(i)],
            })
            .collect();
        let dec = (0..cfg.depth)
            .map(|i| Block::zeros(2 * ch(i), ch(i), bn_fill))
            .collect();
        UNetParams {
            cfg: cfg.clone(),
            enc,
            up,
            dec,
            head_weight: vec![0.0; cfg.classes * cfg.base],
            head_bias: vec![0.0; cfg.classes],
        }
    }

    /// Fresh weights for training from scratch: He-normal convolutions (suited to ReLU),
    /// BatchNorm scale 1, biases 0, running statistics (0, 1) as in PyTorch.
    pub fn init(cfg: &UNetConfig, seed: u64) -> Result<Self, NnError> {
        cfg.validate()?;
        let mut p = Self::filled(cfg, 1.0);
        let mut rng = Rng::new(seed);
        let mut he = |v: &mut Vec<f32>, fan_in: usize| {
            let std = (2.0 / fan_in as f64).sqrt();
            for x in v.iter_mut() {
                *x = (rng.normal() * std) as f32;
            }
        };
        for b in p.enc.iter_mut().chain(p.dec.iter_mut()) {
            he(&mut b.conv1, b.cin * 9);
            he(&mut b.conv2, b.cout * 9);
        }
        for u in p.up.iter_mut() {
            he(&mut u.weight, u.cin);
        }
        he(&mut p.head_weight, cfg.base);
        Ok(p)
    }

    /// Name, shape and kind of every tensor, in the fixed order that [`tensors`](Self::tensors)
    /// and [`tensors_mut`](Self::tensors_mut) follow. It depends on the configuration alone.
    pub fn layout(cfg: &UNetConfig) -> Vec<TensorInfo> {
        let mut out = Vec::new();
        let ch = |i| cfg.channels(i);
        let block = |out: &mut Vec<TensorInfo>, name: &str, cin: usize, cout: usize| {
            out.push(TensorInfo::new(
                format!("{name}.conv1.weight"),
                vec![cout, cin, 3, 3],
                Kind::Weight4d,
            ));
            bn_layout(out, &format!("{name}.bn1"), cout);
            out.push(TensorInfo::new(
                format!("{name}.conv2.weight"),
                vec![cout, cout, 3, 3],
                Kind::Weight4d,
            ));
            bn_layout(out, &format!("{name}.bn2"), cout);
        };
        for i in 0..=cfg.depth {
            block(
                &mut out,
                &format!("enc{i}"),
                if i == 0 { cfg.in_channels } else { ch(i - 1) },
                ch(i),
            );
        }
        for i in 0..cfg.depth {
            out.push(TensorInfo::new(
                format!("up{i}.weight"),
                vec![ch(i + 1), ch(i), 2, 2],
                Kind::Weight4d,
            ));
            out.push(TensorInfo::new(
                format!("up{i}.bias"),
                vec![ch(i)],
                Kind::Vector,
            ));
        }
        for i in 0..cfg.depth {
            block(&mut out, &format!("dec{i}"), 2 * ch(i), ch(i));
        }
        out.push(TensorInfo::new(
            "head.weight".into(),
            vec![cfg.classes, cfg.base, 1, 1],
            Kind::Weight4d,
        ));
        out.push(TensorInfo::new(
            "head.bias".into(),
            vec![cfg.classes],
            Kind::Vector,
        ));
        out
    }

    /// Every tensor, in [`layout`](Self::layout) order.
    pub fn tensors(&self) -> Vec<&Vec<f32>> {
        let mut out: Vec<&Vec<f32>> = Vec::new();
        for b in &self.enc {
            out.extend(b.tensors());
        }
        for u in &self.up {
            out.extend([&u.weight, &u.bias]);
        }
        for b in &self.dec {
            out.extend(b.tensors());
        }
        out.extend([&self.head_weight, &self.head_bias]);
        out
    }

    /// Every tensor, mutably, in [`layout`](Self::layout) order.
    pub fn tensors_mut(&mut self) -> Vec<&mut Vec<f32>> {
        let mut out: Vec<&mut Vec<f32>> = Vec::new();
        for b in self.enc.iter_mut() {
            out.extend(b.tensors_mut());
        }
        for u in self.up.iter_mut() {
            out.extend([&mut u.weight, &mut u.bias]);
        }
        for b in self.dec.iter_mut() {
            out.extend(b.tensors_mut());
        }
        out.extend([&mut self.head_weight, &mut self.head_bias]);
        out
    }

    /// Number of trainable values.
    pub fn trainable_count(&self) -> usize {
        Self::layout(&self.cfg)
            .iter()
            .filter(|t| t.kind != Kind::RunningStat)
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }
}

/// Name, shape and kind of one tensor of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: Kind,
}

impl TensorInfo {
    fn new(name: String, shape: Vec<usize>, kind: Kind) -> Self {
        TensorInfo { name, shape, kind }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a tensor with no values (never in a valid model).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn bn_layout(out: &mut Vec<TensorInfo>, name: &str, c: usize) {
    out.push(TensorInfo::new(
        format!("{name}.weight"),
        vec![c],
        Kind::Vector,
    ));
    out.push(TensorInfo::new(
        format!("{name}.bias"),
        vec![c],
        Kind::Vector,
    ));
    out.push(TensorInfo::new(
        format!("{name}.running_mean"),
        vec![c],
        Kind::RunningStat,
    ));
    out.push(TensorInfo::new(
        format!("{name}.running_var"),
        vec![c],
        Kind::RunningStat,
    ));
}

impl Block {
    fn tensors(&self) -> [&Vec<f32>; 10] {
        let (a, b) = (&self.bn1, &self.bn2);
        [
            &self.conv1,
            &a.weight,
            &a.bias,
            &a.running_mean,
            &a.running_var,
            &self.conv2,
            &b.weight,
            &b.bias,
            &b.running_mean,
            &b.running_var,
        ]
    }

    fn tensors_mut(&mut self) -> [&mut Vec<f32>; 10] {
        let (a, b) = (&mut self.bn1, &mut self.bn2);
        [
            &mut self.conv1,
            &mut a.weight,
            &mut a.bias,
            &mut a.running_mean,
            &mut a.running_var,
            &mut self.conv2,
            &mut b.weight,
            &mut b.bias,
            &mut b.running_mean,
            &mut b.running_var,
        ]
    }
}
