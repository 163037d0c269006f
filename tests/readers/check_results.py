"""Reads a cineseg results folder with the tools clinicians' systems use and checks it against
cineseg's own outputs. Run by tests/result_readers.rs in the venv scripts/test.sh makes.

  check_results.py <results folder> [--dcmqi <segimage2itkimage>]

Checks (each prints one line; any failure exits non-zero with the reason):
  sr      highdicom reads sr.dcm as a TID 1500 Measurement Report and finds every measurement
          of report.json (absolute and BSA-indexed) with the same value and unit.
  seg-ed  highdicom segread + get_volume on seg_ed.dcm equals the ED phase of labels.nii.gz
  seg-es  voxel for voxel (both in canonical RAS orientation, affines equal within 0.01 mm).
  dcmqi   segimage2itkimage converts seg_ed.dcm into a label map equal to the ED phase.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def sr_measurements(path):
    sr = hd.sr.srread(str(path))
    content = sr.content
    if not isinstance(content, hd.sr.MeasurementReport):
        fail(f"{path}: not read as a TID 1500 Measurement Report")
    groups = list(content.get_volumetric_roi_measurement_groups()) + list(
        content.get_image_measurement_groups()
    )
    rows = []
    for g in groups:
        for m in g.get_measurements():
            rows.append((g.tracking_identifier, m.name, float(m.value), m.unit.value))
    return rows


def ucum(unit):
    return "{H.B.}/min" if unit == "/min" else unit


def check_sr(folder, report):
    rows = sr_measurements(folder / "sr.dcm")
    print("SR measurements (highdicom):")
    for tid, name, value, unit in rows:
        print(f"  [{tid}] ({name.value}, {name.scheme_designator}, \"{name.meaning}\") = {value:g} {unit}")
    expected = []
    for m in report["measurements"]:
        expected.append((m["label"], m["value"], ucum(m["unit"])))
        if m.get("indexed") is not None:
            expected.append((m["label"] + " (indexed)", m["indexed"], ucum(m["indexed_unit"])))
    for key in ("ed_ms", "es_ms"):
        t = report["key_phase_trigger_times_ms"].get(key)
        if t is not None:
            expected.append((key, t, "ms"))
    unused = list(rows)
    for label, value, unit in expected:
        hit = next(
            (r for r in unused if r[3] == unit and abs(r[2] - value) <= 1e-3 * max(1.0, abs(value))),
            None,
        )
        if hit is None:
            fail(f"sr: {label} = {value} {unit} from report.json not found in the SR")
        unused.remove(hit)
    if unused:
        fail(f"sr: measurements in the SR but not in report.json: {unused}")
    print(f"ok sr: {len(rows)} measurements, all equal to report.json")


def canonical(img):
    c = nib.as_closest_canonical(img)
    return np.asarray(c.dataobj).astype(np.uint8), c.affine


def phase_of(labels, phase):
    data = np.asarray(labels.dataobj)
    return nib.Nifti1Image(data[..., phase].astype(np.uint8), labels.affine)


def same(name, got_img, want_img):
    got, ga = canonical(got_img)
    want, wa = canonical(want_img)
    if got.shape != want.shape:
        fail(f"{name}: shape {got.shape} != {want.shape}")
    if not np.allclose(ga, wa, atol=0.01):
        fail(f"{name}: affine\n{ga}\n!= labels.nii.gz affine\n{wa}")
    diff = int((got != want).sum())
    if diff:
        fail(f"{name}: {diff} of {want.size} voxels differ")
    counts = {int(c): int((want == c).sum()) for c in (1, 2, 3)}
    print(f"ok {name}: {want.size} voxels equal (LV/MYO/RV voxels {counts})")


def check_seg(folder, report, key, labels):
    path = folder / f"seg_{key}.dcm"
    seg = hd.seg.segread(str(path))
    vol = seg.get_volume(combine_segments=True, dtype=np.uint8)
    phase = report["summary"][f"{key}_phase"]
    same(f"seg-{key} (highdicom get_volume)", vol.to_nibabel(), phase_of(labels, phase))


def check_dcmqi(folder, report, labels, tool):
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run(
            [tool, "--inputDICOM", str(folder / "seg_ed.dcm"), "--outputDirectory", out,
             "--outputType", "nifti", "--mergeSegments"],
            capture_output=True, text=True,
        )
        if r.returncode != 0:
            fail(f"dcmqi: segimage2itkimage failed: {r.stderr[-2000:]}")
        files = sorted(Path(out).glob("*.nii*"))
        if len(files) != 1:
            fail(f"dcmqi: expected one merged label map, got {files}")
        got = nib.load(str(files[0]))
        same("dcmqi (segimage2itkimage --mergeSegments)", got, phase_of(labels, report["summary"]["ed_phase"]))


def main():
    folder = Path(sys.argv[1])
    dcmqi = sys.argv[sys.argv.index("--dcmqi") + 1] if "--dcmqi" in sys.argv else None
    report = json.loads((folder / "report.json").read_text())
    labels = nib.load(str(folder / "labels.nii.gz"))
    check_sr(folder, report)
    check_seg(folder, report, "ed", labels)
    check_seg(folder, report, "es", labels)
    if dcmqi:
        check_dcmqi(folder, report, labels, dcmqi)
    print("all checks passed")


if __name__ == "__main__":
    main()
