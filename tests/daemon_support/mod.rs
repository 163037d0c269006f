//! Helpers for the daemon tests: a tiny model, a synthetic cine series written as DICOM files,
//! the daemon as a child process, and dcmtk tools with time limits.

#![allow(dead_code)]

use cineseg::nn::config::Normalisation;
use cineseg::nn::weights::StoreAs;
use cineseg::nn::{Model, Preprocess, UNetConfig, UNetParams};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether dcmtk's tools are installed; prints why a test skips when not.
pub fn have_dcmtk() -> bool {
    let ok = Command::new("echoscu")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        println!("skipped: dcmtk (echoscu, storescu, storescp) is not installed");
    }
    ok
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A 4-channel, depth-2 U-Net with 2 mm / 32 px preprocessing: fast on any CPU.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let p = dir.join("tiny.safetensors");
    let pre = Preprocess {
        spacing_mm: 2.0,
        size: 32,
        normalisation: Normalisation::default(),
    };
    Model::new(
        UNetParams::init(&UNetConfig::new(4, 2), 1).expect("params"),
        Some(pre),
    )
    .save(&p, StoreAs::F32)
    .expect("save model");
    p
}

/// Writes a synthetic short-axis cine (`slices` x `phases`, 40x40 px, 1.5 mm) as MR files.
pub fn synthetic_series(
    dir: &Path,
    series_uid: &str,
    slices: usize,
    phases: usize,
) -> Vec<PathBuf> {
    synthetic_series_of(dir, series_uid, "PID-SECRET-42", slices, phases)
}

/// The LV radius (pixels) of [`synthetic_series`] at `phase` of `phases`; the MYO ring is 3 px
/// wide around it, centred at (20, 20).
pub fn synthetic_lv_radius(phase: usize, phases: usize) -> f32 {
    10.0 - 3.0 * (phase as f32 / phases as f32)
}

/// [`synthetic_series`] for patient `patient_id`.
pub fn synthetic_series_of(
    dir: &Path,
    series_uid: &str,
    patient_id: &str,
    slices: usize,
    phases: usize,
) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("series dir");
    let mut out = Vec::new();
    let (rows, cols) = (40usize, 40usize);
    for s in 0..slices {
        for p in 0..phases {
            let n = s * phases + p + 1;
            let sop = format!("{series_uid}.{n}");
            let r = synthetic_lv_radius(p, phases);
            let mut px = Vec::with_capacity(rows * cols * 2);
            for y in 0..rows {
                for x in 0..cols {
                    let d = ((x as f32 - 20.0).powi(2) + (y as f32 - 20.0).powi(2)).sqrt();
                    let v: u16 = if d < r {
                        900
                    } else if d < r + 3.0 {
                        300
                    } else {
                        100 + ((x * 7 + y * 13) % 50) as u16
                    };
                    px.extend_from_slice(&v.to_le_bytes());
                }
            }
            let el = |t, vr, v: PrimitiveValue| DataElement::new(t, vr, v);
            let obj = InMemDicomObject::from_element_iter([
                el(
                    tags::SOP_CLASS_UID,
                    VR::UI,
                    PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.4"),
                ),
                el(
                    tags::SOP_INSTANCE_UID,
                    VR::UI,
                    PrimitiveValue::from(sop.as_str()),
                ),
                el(tags::MODALITY, VR::CS, PrimitiveValue::from("MR")),
                el(
                    tags::PATIENT_NAME,
                    VR::PN,
                    PrimitiveValue::from("Secret^Patient"),
                ),
                el(tags::PATIENT_ID, VR::LO, PrimitiveValue::from(patient_id)),
                el(
                    tags::STUDY_INSTANCE_UID,
                    VR::UI,
                    PrimitiveValue::from(format!("{series_uid}.99").as_str()),
                ),
                el(
                    tags::SERIES_INSTANCE_UID,
                    VR::UI,
                    PrimitiveValue::from(series_uid),
                ),
                el(tags::SERIES_NUMBER, VR::IS, PrimitiveValue::from("7")),
                el(
                    tags::FRAME_OF_REFERENCE_UID,
                    VR::UI,
                    PrimitiveValue::from(format!("{series_uid}.98").as_str()),
                ),
                el(
                    tags::INSTANCE_NUMBER,
                    VR::IS,
                    PrimitiveValue::from(n.to_string()),
                ),
                el(
                    tags::IMAGE_POSITION_PATIENT,
                    VR::DS,
                    PrimitiveValue::from(format!("-30\\-30\\{}", s * 8)),
                ),
                el(
                    tags::IMAGE_ORIENTATION_PATIENT,
                    VR::DS,
                    PrimitiveValue::from("1\\0\\0\\0\\1\\0"),
                ),
                el(
                    tags::PIXEL_SPACING,
                    VR::DS,
                    PrimitiveValue::from("1.5\\1.5"),
                ),
                el(tags::SLICE_THICKNESS, VR::DS, PrimitiveValue::from("8")),
                el(
                    tags::TRIGGER_TIME,
                    VR::DS,
                    PrimitiveValue::from(format!("{}", p * 40)),
                ),
                el(
                    tags::CARDIAC_NUMBER_OF_IMAGES,
                    VR::IS,
                    PrimitiveValue::from(phases.to_string()),
                ),
                el(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
                el(
                    tags::PHOTOMETRIC_INTERPRETATION,
                    VR::CS,
                    PrimitiveValue::from("MONOCHROME2"),
                ),
                el(tags::ROWS, VR::US, PrimitiveValue::from(rows as u16)),
                el(tags::COLUMNS, VR::US, PrimitiveValue::from(cols as u16)),
                el(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
                el(tags::BITS_STORED, VR::US, PrimitiveValue::from(12u16)),
                el(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16)),
                el(
                    tags::PIXEL_REPRESENTATION,
                    VR::US,
                    PrimitiveValue::from(0u16),
                ),
                el(tags::PIXEL_DATA, VR::OW, PrimitiveValue::from(px)),
            ]);
            let meta = FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2.1")
                .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.4")
                .media_storage_sop_instance_uid(sop.as_str());
            let path = dir.join(format!("{n}.dcm"));
            obj.with_meta(meta)
                .expect("with meta")
                .write_to_file(&path)
                .expect("write dcm");
            out.push(path);
        }
    }
    out
}

/// A daemon child process with its folders.
pub struct Served {
    pub child: Child,
    pub port: u16,
    pub root: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Served {
    /// Writes a config under `root` and starts `cineseg serve`; waits until the port answers.
    /// `extra` goes into `[server]` (and may open later sections).
    pub fn start(root: &Path, extra: &str, port: u16) -> Served {
        Self::start_with_spool(root, extra, "", port)
    }

    /// [`Served::start`] with more `[spool]` keys.
    pub fn start_with_spool(root: &Path, extra: &str, spool_extra: &str, port: u16) -> Served {
        Self::start_with(root, extra, spool_extra, "", port)
    }

    /// [`Served::start`] with more `[spool]` and `[pipeline]` keys.
    pub fn start_with(
        root: &Path,
        extra: &str,
        spool_extra: &str,
        pipeline_extra: &str,
        port: u16,
    ) -> Served {
        std::fs::create_dir_all(root).expect("root");
        let model = root.join("tiny.safetensors");
        if !model.exists() {
            tiny_model(root);
        }
        let config = root.join("cineseg.toml");
        // server defaults for tests, unless `extra` sets the key itself
        let defaults: String = [
            "min_free_percent = 0.0",
            "min_free_gb = 0.0",
            "idle_timeout_s = 10",
        ]
        .iter()
        .filter(|l| !extra.contains(l.split(' ').next().unwrap_or("")))
        .map(|l| format!("{l}\n"))
        .collect();
        let spool_defaults: String = ["settle_ms = 300", "series_idle_s = 5"]
            .iter()
            .filter(|l| !spool_extra.contains(l.split(' ').next().unwrap_or("")))
            .map(|l| format!("{l}\n"))
            .collect();
        let text = format!(
            "[server]\nae_title = \"CINESEG\"\nlisten = \"127.0.0.1:{port}\"\n{defaults}{extra}\n\
[spool]\ndir = \"{s}\"\n{spool_defaults}{spool_extra}\n\
[pipeline]\nmodel = \"{m}\"\ndevice = \"cpu\"\nthreads = {t}\nbatch = 8\n{pipeline_extra}\n\
[output]\ndir = \"{o}\"\n\
[logging]\nhealth_interval_s = 1\n",
            s = root.join("state").display(),
            m = model.display(),
            t = std::env::var("CINESEG_TEST_THREADS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1),
            o = root.join("results").display()
        );
        // CINESEG_TEST_OMIT_KEYS (comma-separated) drops config keys an older build under
        // CINESEG_TEST_BIN does not know.
        let omit = std::env::var("CINESEG_TEST_OMIT_KEYS").unwrap_or_default();
        let omitted: Vec<&str> = omit.split(',').filter(|k| !k.trim().is_empty()).collect();
        let text: String = text
            .lines()
            .filter(|l| !omitted.iter().any(|k| l.trim_start().starts_with(k.trim())))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&config, text).expect("config");
        Self::spawn(root, config, port)
    }

    /// Starts the daemon on an existing config (a restart).
    pub fn spawn(root: &Path, config: PathBuf, port: u16) -> Served {
        let log = root.join(format!("daemon-{}.log", count(root)));
        let f = std::fs::File::create(&log).expect("log");
        // CINESEG_TEST_BIN runs these tests against another build (e.g. an old commit's, to
        // show that a test fails there).
        let bin = std::env::var_os("CINESEG_TEST_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cineseg")));
        let child = Command::new(bin)
            .args(["--log-level", "info", "serve", "--config"])
            .arg(&config)
            .env("CINESEG_NO_CUDA", "1")
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("spawn cineseg serve");
        let mut s = Served {
            child,
            port,
            root: root.into(),
            config,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("cineseg serve exited ({st}); log:\n{}", s.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not listen; log:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Result folders (complete ones only).
    pub fn results(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.root.join("results"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir() && !p.to_string_lossy().ends_with(".partial"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Waits until `n` jobs are done (results stored and sent).
    pub fn wait_done(&self, n: usize, limit: Duration) -> bool {
        wait_until(limit, || count(&self.root.join("state/jobs/done")) >= n)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `f` every 100 ms until it holds (true) or `limit` passes (false).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// dcmtk's `storescp` as the destination PACS (AE title PACS), writing what it receives into
/// `dir`; `extra` options go before the port (e.g. `+B`, `--refuse`).
pub fn storescp(port: u16, dir: &Path, extra: &[&str]) -> Child {
    std::fs::create_dir_all(dir).expect("pacs dir");
    Command::new("storescp")
        .args(["-aet", "PACS", "-od"])
        .arg(dir)
        .args(extra)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("storescp")
}

/// Files in a folder.
pub fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).count())
        .unwrap_or(0)
}

/// Runs a command with a time limit (killed past it).
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tool");
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// `storescu` to the daemon.
pub fn storescu(port: u16, calling: &str, files: &[PathBuf]) -> Output {
    let mut c = Command::new("storescu");
    c.args([
        "-aet",
        calling,
        "-aec",
        "CINESEG",
        "127.0.0.1",
        &port.to_string(),
    ]);
    c.args(files);
    run_limited(&mut c, Duration::from_secs(120))
}

/// `echoscu` to the daemon.
pub fn echoscu(port: u16, calling: &str) -> Output {
    run_limited(
        Command::new("echoscu").args([
            "-aet",
            calling,
            "-aec",
            "CINESEG",
            "127.0.0.1",
            &port.to_string(),
        ]),
        Duration::from_secs(20),
    )
}

/// DICOM files (`*.dcm`) under `dir`, recursively: what a result folder sends to the PACS.
pub fn dcm_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .map(|p| {
                    if p.is_dir() {
                        dcm_files(&p)
                    } else {
                        usize::from(p.extension().is_some_and(|e| e == "dcm"))
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
