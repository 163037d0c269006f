//! The ACDC challenge layout (Bernard et al., IEEE TMI 2018): the public cine MRI set the base
//! model is trained on. Any folder laid out the same way can be scanned, so other datasets
//! converted to this layout import without new code.
//!
//! ```text
//! root/patientNNN/Info.cfg                  ED, ES, Group, NbFrame, Height, Weight
//! root/patientNNN/patientNNN_frameXX.nii.gz     one short-axis volume (phase XX, 1-based)
//! root/patientNNN/patientNNN_frameXX_gt.nii.gz  its expert labels (0 bg, 1 RV, 2 MYO, 3 LV)
//! root/patientNNN/patientNNN_4d.nii.gz          optional full cine (x, y, z, t)
//! ```

use super::IoError;
pub use crate::image::Phase;
use std::path::{Path, PathBuf};

/// One patient folder: its metadata and the volumes found on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct AcdcPatient {
    /// Folder name, e.g. `patient001`; the key of the fixed train/validation split.
    pub id: String,
    pub dir: PathBuf,
    pub info: AcdcInfo,
    /// Volumes sorted by frame number.
    pub frames: Vec<AcdcFrame>,
    /// The full cine, when the folder has one.
    pub cine_4d: Option<PathBuf>,
}

/// The contents of `Info.cfg`. Frame numbers are 1-based, as in the file names.
#[derive(Clone, Debug, PartialEq)]
pub struct AcdcInfo {
    pub ed: usize,
    pub es: usize,
    /// Diagnostic group (NOR, MINF, DCM, HCM, RV), kept to stratify evaluation.
    pub group: String,
    pub nb_frame: usize,
    pub height_cm: Option<f32>,
    pub weight_kg: Option<f32>,
}

/// One short-axis volume at one cardiac phase, with its labels when an expert drew them.
#[derive(Clone, Debug, PartialEq)]
pub struct AcdcFrame {
    /// 1-based phase number from the file name.
    pub frame: usize,
    pub image: PathBuf,
    pub labels: Option<PathBuf>,
    pub phase: Phase,
}

/// Error for a label value outside ACDC's four classes; callers add the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("label value {0} is not an ACDC class (0..=3)")]
pub struct UnknownLabel(pub u8);

/// Maps an ACDC label (0 bg, 1 RV, 2 MYO, 3 LV) to cineseg's class order (0 background, 1 LV,
/// 2 MYO, 3 RV). Datasets disagree on label order, so every importer maps explicitly.
pub fn acdc_to_cineseg(label: u8) -> Result<u8, UnknownLabel> {
    match label {
        0 => Ok(0),
        1 => Ok(3),
        2 => Ok(2),
        3 => Ok(1),
        other => Err(UnknownLabel(other)),
    }
}

/// Finds every `patientNNN` folder directly under `root`, sorted by id. Folders without an
/// `Info.cfg` are an error (a half-copied dataset should not import silently); other entries
/// are ignored.
pub fn scan(root: &Path) -> Result<Vec<AcdcPatient>, IoError> {
    let entries = std::fs::read_dir(root).map_err(|e| IoError::fs(root, e))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| IoError::fs(root, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Follows symbolic links: a dataset assembled from links to patient folders is common.
        let is_dir = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
        if is_dir && is_patient_id(&name) {
            dirs.push((name, entry.path()));
        }
    }
    dirs.sort();
    dirs.into_iter()
        .map(|(id, dir)| scan_patient(id, dir))
        .collect()
}

fn is_patient_id(name: &str) -> bool {
    name.strip_prefix("patient")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn scan_patient(id: String, dir: PathBuf) -> Result<AcdcPatient, IoError> {
    let cfg = dir.join("Info.cfg");
    let text = std::fs::read_to_string(&cfg).map_err(|e| IoError::fs(&cfg, e))?;
    let info = parse_info(&cfg, &text)?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut cine_4d = None;
    for entry in std::fs::read_dir(&dir).map_err(|e| IoError::fs(&dir, e))? {
        let entry = entry.map_err(|e| IoError::fs(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match classify(&id, &name) {
            Some(FileKind::Image(f)) => images.push((f, entry.path())),
            Some(FileKind::Labels(f)) => labels.push((f, entry.path())),
            Some(FileKind::Cine) => cine_4d = Some(entry.path()),
            None => {}
        }
    }
    images.sort();
    let mut frames = Vec::with_capacity(images.len());
    for (frame, image) in images {
        if frames.last().is_some_and(|f: &AcdcFrame| f.frame == frame) {
            return Err(IoError::layout(
                &image,
                format!("a second image for frame {frame} (.nii and .nii.gz?)"),
            ));
        }
        let label = labels
            .iter()
            .find(|(f, _)| *f == frame)
            .map(|(_, p)| p.clone());
        let phase = if frame == info.ed {
            Phase::Ed
        } else if frame == info.es {
            Phase::Es
        } else {
            Phase::Other
        };
        frames.push(AcdcFrame {
            frame,
            image,
            labels: label,
            phase,
        });
    }
    if let Some((f, p)) = labels
        .iter()
        .find(|(f, _)| !frames.iter().any(|fr| fr.frame == *f))
    {
        return Err(IoError::layout(
            p,
            format!("labels for frame {f} but no image for that frame"),
        ));
    }
    Ok(AcdcPatient {
        id,
        dir,
        info,
        frames,
        cine_4d,
    })
}

enum FileKind {
    Image(usize),
    Labels(usize),
    Cine,
}

/// Recognises `{id}_frameXX[_gt].nii[.gz]` and `{id}_4d.nii[.gz]`.
fn classify(id: &str, name: &str) -> Option<FileKind> {
    let stem = name
        .strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))?;
    let rest = stem.strip_prefix(id)?.strip_prefix('_')?;
    if rest == "4d" {
        return Some(FileKind::Cine);
    }
    let rest = rest.strip_prefix("frame")?;
    let (num, gt) = match rest.strip_suffix("_gt") {
        Some(n) => (n, true),
        None => (rest, false),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frame = num.parse().ok()?;
    Some(if gt {
        FileKind::Labels(frame)
    } else {
        FileKind::Image(frame)
    })
}

/// Parses `Key: value` lines. ED, ES, Group and NbFrame are required; Height and Weight are
/// optional (some sites do not record them).
pub fn parse_info(path: &Path, text: &str) -> Result<AcdcInfo, IoError> {
    let get = |key: &str| -> Option<String> {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let required = |key: &str, v: Option<String>| {
        v.ok_or_else(|| IoError::layout(path, format!("no `{key}:` line")))
    };
    let frame_no = |key: &str, v: String| -> Result<usize, IoError> {
        // Some converters write integers as floats ("12.0").
        let x: f64 = v
            .parse()
            .map_err(|_| IoError::layout(path, format!("`{key}: {v}` is not a number")))?;
        if x.fract() != 0.0 || !(1.0..=100_000.0).contains(&x) {
            return Err(IoError::layout(
                path,
                format!("`{key}: {v}` is not a frame number"),
            ));
        }
        Ok(x as usize)
    };
    let optional = |key: &str, v: Option<String>| -> Result<Option<f32>, IoError> {
        match v {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => v
                .parse::<f32>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .map(Some)
                .ok_or_else(|| {
                    IoError::layout(path, format!("`{key}: {v}` is not a positive number"))
                }),
        }
    };
    let ed = frame_no("ED", required("ED", get("ED"))?)?;
    let es = frame_no("ES", required("ES", get("ES"))?)?;
    let nb_frame = frame_no("NbFrame", required("NbFrame", get("NbFrame"))?)?;
    let group = required("Group", get("Group"))?;
    if ed > nb_frame || es > nb_frame {
        return Err(IoError::layout(
            path,
            format!("ED {ed} or ES {es} beyond NbFrame {nb_frame}"),
        ));
    }
    let height_cm = optional("Height", get("Height"))?;
    let weight_kg = optional("Weight", get("Weight"))?;
    Ok(AcdcInfo {
        ed,
        es,
        group,
        nb_frame,
        height_cm,
        weight_kg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_mapping_swaps_lv_and_rv() {
        let mapped: Vec<u8> = (0..4).map(|l| acdc_to_cineseg(l).unwrap()).collect();
        assert_eq!(mapped, vec![0, 3, 2, 1]);
        assert_eq!(acdc_to_cineseg(4), Err(UnknownLabel(4)));
        assert_eq!(acdc_to_cineseg(255), Err(UnknownLabel(255)));
    }

    #[test]
    fn info_cfg_parsing() {
        let p = Path::new("Info.cfg");
        let i = parse_info(
            p,
            "ED: 1\nES: 12\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n",
        )
        .unwrap();
        assert_eq!(
            (i.ed, i.es, i.nb_frame, i.group.as_str()),
            (1, 12, 30, "DCM")
        );
        assert_eq!((i.height_cm, i.weight_kg), (Some(184.0), Some(95.0)));
        let i = parse_info(p, "ED: 3.0\nES: 9\nGroup: NOR\nNbFrame: 20\n").unwrap();
        assert_eq!((i.ed, i.height_cm), (3, None));
        for bad in [
            "ES: 9\nGroup: NOR\nNbFrame: 20\n",
            "ED: x\nES: 9\nGroup: NOR\nNbFrame: 20\n",
            "ED: 0\nES: 9\nGroup: NOR\nNbFrame: 20\n",
            "ED: 1\nES: 29\nGroup: NOR\nNbFrame: 20\n",
            "ED: 1\nES: 9\nNbFrame: 20\n",
            "ED: 1\nES: 9\nGroup: NOR\nNbFrame: 20\nWeight: -3\n",
        ] {
            let e = parse_info(p, bad).unwrap_err();
            assert!(e.to_string().contains("Info.cfg"), "{e}");
        }
    }

    #[test]
    fn file_names() {
        assert!(matches!(
            classify("patient001", "patient001_frame01.nii.gz"),
            Some(FileKind::Image(1))
        ));
        assert!(matches!(
            classify("patient001", "patient001_frame12_gt.nii"),
            Some(FileKind::Labels(12))
        ));
        assert!(matches!(
            classify("patient001", "patient001_4d.nii.gz"),
            Some(FileKind::Cine)
        ));
        for other in [
            "patient002_frame01.nii.gz",
            "patient001_frame.nii.gz",
            "patient001_frame01.png",
            "Info.cfg",
        ] {
            assert!(classify("patient001", other).is_none(), "{other}");
        }
        assert!(
            is_patient_id("patient100") && !is_patient_id("patient") && !is_patient_id("patientX")
        );
    }

    #[test]
    fn scan_synthetic_folder() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("patient007");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            d.join("Info.cfg"),
            "ED: 1\nES: 5\nGroup: NOR\nNbFrame: 10\n",
        )
        .unwrap();
        for f in [
            "patient007_frame05.nii.gz",
            "patient007_frame01.nii.gz",
            "patient007_frame01_gt.nii.gz",
        ] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        std::fs::create_dir(root.path().join("notes")).unwrap();
        let pts = scan(root.path()).unwrap();
        assert_eq!(pts.len(), 1);
        let p = &pts[0];
        assert_eq!(p.id, "patient007");
        assert_eq!(
            p.frames
                .iter()
                .map(|f| (f.frame, f.phase))
                .collect::<Vec<_>>(),
            vec![(1, Phase::Ed), (5, Phase::Es)]
        );
        assert!(p.frames[0].labels.is_some() && p.frames[1].labels.is_none());
        assert!(p.cine_4d.is_none());

        std::fs::write(d.join("patient007_frame03_gt.nii.gz"), b"").unwrap();
        assert!(
            scan(root.path()).is_err(),
            "labels without image must be reported"
        );
        std::fs::create_dir(root.path().join("patient008")).unwrap();
        let e = scan(root.path()).unwrap_err();
        assert!(
            e.to_string().contains("Info.cfg") || e.to_string().contains("frame 3"),
            "{e}"
        );
        assert!(scan(&root.path().join("absent")).is_err());
    }
}
