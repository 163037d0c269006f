//! Weights files: round trips in both precisions, metadata kept, and clear errors for bad
//! files (missing, truncated, another format, another configuration, NaN values).

use cineseg::nn::config::Normalisation;
use cineseg::nn::weights::StoreAs;
use cineseg::nn::{Model, Preprocess, UNetConfig, UNetParams};
use std::path::Path;

fn model() -> Model {
    let mut m = Model::new(
        UNetParams::init(&UNetConfig::new(4, 2), 3).unwrap(),
        Some(Preprocess {
            spacing_mm: 1.25,
            size: 96,
            normalisation: Normalisation::default(),
        }),
    );
    m.extra.insert("recipe".into(), "test".into());
    m
}

#[test]
fn round_trip_f32_is_exact_and_keeps_metadata() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m.safetensors");
    let m = model();
    m.save(&p, StoreAs::F32).unwrap();
    let back = Model::load(&p).unwrap();
    assert_eq!(back, m);
}

#[test]
fn round_trip_f16_rounds_to_half_precision() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m16.safetensors");
    let m = model();
    m.save(&p, StoreAs::F16).unwrap();
    let back = Model::load(&p).unwrap();
    for (a, b) in m.params.tensors().iter().zip(back.params.tensors()) {
        for (x, y) in a.iter().zip(b.iter()) {
            assert_eq!(half::f16::from_f32(*x).to_f32(), *y);
        }
    }
    assert_eq!(back.preprocess, m.preprocess);
}

fn load_err(p: &Path) -> String {
    Model::load(p).unwrap_err().to_string()
}

#[test]
fn bad_files_give_specific_errors() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope.safetensors");
    let e = load_err(&missing);
    assert!(e.contains("nope.safetensors"), "{e}");

    let good = d.path().join("good.safetensors");
    model().save(&good, StoreAs::F32).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = d.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&truncated);
    assert!(
        e.contains("truncated.safetensors")
            && (e.contains("corrupt") || e.contains("not a safetensors")),
        "{e}"
    );

    let garbage = d.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"hello, this is not a model").unwrap();
    assert!(load_err(&garbage).contains("not a safetensors"));

    // The file's config says base 4, but we rewrite it to claim base 8: shapes disagree.
    let text = bytes.clone();
    let header_len = u64::from_le_bytes(text[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(text[8..8 + header_len].to_vec()).unwrap();
    let lied = header.replace("\\\"base\\\":4", "\\\"base\\\":8");
    assert_ne!(lied, header, "test must find the config in the header");
    let mut out = (lied.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(lied.as_bytes());
    out.extend_from_slice(&text[8 + header_len..]);
    let other = d.path().join("other-config.safetensors");
    std::fs::write(&other, out).unwrap();
    let e = load_err(&other);
    assert!(e.contains("shape") && e.contains("base 8"), "{e}");

    // A different format tag.
    let wrong = header.replace("cineseg-unet", "something-else");
    let mut out = (wrong.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(wrong.as_bytes());
    out.extend_from_slice(&text[8 + header_len..]);
    let fmt = d.path().join("format.safetensors");
    std::fs::write(&fmt, out).unwrap();
    assert!(load_err(&fmt).contains("something-else"));
}

#[test]
fn nan_weights_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("nan.safetensors");
    let mut m = model();
    m.params.head_bias[0] = f32::NAN;
    m.save(&p, StoreAs::F32).unwrap();
    assert!(load_err(&p).contains("NaN"));
}

#[test]
fn wrong_input_shapes_are_errors_not_panics() {
    use cineseg::nn::cpu::CpuBackend;
    use cineseg::nn::loss::Target;
    use cineseg::nn::{Backend, Tensor};
    let mut m = model();
    let mut cpu = CpuBackend::new(1).unwrap();
    cpu.load_inference(&m.params).unwrap();
    let e = cpu
        .infer(&Tensor::zeros(1, 30, 32, 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("divisible by 4"), "{e}");
    let e = cpu
        .infer(&Tensor::zeros(1, 32, 32, 2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("channel"), "{e}");
    let x = Tensor::zeros(2, 32, 32, 1);
    let before = m.params.clone();
    let bad = Target::full(vec![0; 10], 2, 4);
    assert!(cpu.train_step(&mut m.params, &x, &bad).is_err());
    assert!(
        m.params == before,
        "a rejected batch must not touch BatchNorm statistics"
    );
    let bad_label = Target::full(vec![7; 2 * 32 * 32], 2, 4);
    assert!(cpu
        .train_step(&mut m.params, &x, &bad_label)
        .unwrap_err()
        .to_string()
        .contains("label value 7"));
}
