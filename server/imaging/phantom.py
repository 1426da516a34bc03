"""Phantom: a synthetic chest CT series, written as real DICOM files (never committed).

Consistent UIDs, positions and orientation, HU rescale (-1024), window presets, a body outline,
two lungs with a nodule, a spine and the table; native little-endian or JPEG-LS lossless.

Seeded noise as a scanner makes it (strongest through the body, weaker in the air, none outside
the reconstruction circle), so lossless compression does what it does on real CT (about 2.7:1
with JPEG-LS) rather than the 12:1 a noiseless drawing gives. The same seed gives the same
pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    generate_uid,
)

__all__ = ["PhantomPatient", "write_ct_series"]

_ROOT = "1.2.826.0.1.3680043.10.1447."  # eBoard's (example) UID root for generated data


@dataclass(frozen=True)
class PhantomPatient:
    name: str = "Wang^Fang"
    mrn: str = "HZ00012345"
    birth_date: date = date(1961, 3, 2)
    sex: str = "F"
    character_set: str = "ISO_IR 192"  # UTF-8, so Chinese names survive


# Noise (HU, standard deviation) through the body and in the air around it; outside the
# reconstruction circle a scanner writes a constant padding value.
_BODY_NOISE = 40.0
_AIR_NOISE = 20.0
_PADDING_HU = -1024.0


def _slice_hu(size: int, z: float, rng: np.random.Generator) -> np.ndarray:
    """One axial slice in Hounsfield units; ``z`` in [0, 1] from feet to head."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    img = np.full((size, size), -1000.0, dtype=np.float32)  # air
    body = (x / 0.42) ** 2 + (y / 0.32) ** 2 <= 1.0
    img[body] = 40.0  # soft tissue
    for cx in (-0.17, 0.17):
        lung = ((x - cx) / 0.13) ** 2 + ((y + 0.02) / 0.2) ** 2 <= 1.0
        img[lung] = -850.0
    nodule_r = 0.025 * max(0.0, 1.0 - abs(z - 0.6) / 0.08)
    if nodule_r > 0:
        img[((x - 0.2) ** 2 + (y + 0.05) ** 2) <= nodule_r**2] = 30.0
    img[((x / 0.04) ** 2 + ((y - 0.22) / 0.04) ** 2) <= 1.0] = 700.0  # vertebra
    img[(np.abs(y - 0.4) < 0.01) & (np.abs(x) < 0.45)] = 200.0  # table
    img += (np.sin(x * 40 + z * 6) * 8).astype(np.float32)  # texture, so slices differ
    noise = rng.standard_normal((size, size), dtype=np.float32)
    img += noise * np.where(body, _BODY_NOISE, _AIR_NOISE).astype(np.float32)
    img[x**2 + y**2 > 0.25] = _PADDING_HU
    return img


def write_ct_series(
    folder: Path,
    *,
    slices: int = 120,
    size: int = 512,
    jpegls: bool = False,
    patient: PhantomPatient | None = None,
    study_uid: str | None = None,
    series_number: int = 1,
    study_date: date | None = None,
    seed: int = 1447,
) -> list[Path]:
    """Write the series into ``folder``; return the file paths in slice order. The pixels
    depend on ``seed``, ``slices`` and ``size`` only."""
    patient = patient or PhantomPatient()
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid(_ROOT)
    series_uid = generate_uid(_ROOT)
    frame_uid = generate_uid(_ROOT)
    day = (study_date or date.today()).strftime("%Y%m%d")
    spacing, thickness = 0.7, 2.5
    paths = []
    for index in range(slices):
        z = index / max(1, slices - 1)
        hu = _slice_hu(size, z, np.random.default_rng([seed, index]))
        stored = np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16)
        ds = Dataset()
        ds.SpecificCharacterSet = patient.character_set
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid(_ROOT)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.PatientName = patient.name
        ds.PatientID = patient.mrn
        ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
        ds.PatientSex = patient.sex
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = day
        ds.StudyTime = ds.SeriesTime = "093000"
        ds.AccessionNumber = "ACC" + patient.mrn[-6:]
        ds.StudyID = "1"
        ds.StudyDescription = "CT CHEST WITH CONTRAST"
        ds.SeriesDescription = f"Axial {thickness} mm" + (" (JPEG-LS)" if jpegls else "")
        ds.SeriesNumber = series_number
        ds.InstanceNumber = index + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstitutionName = "Hangzhou First Hospital"
        ds.ReferringPhysicianName = "Zhang^Wei"
        ds.BurnedInAnnotation = "NO"
        ds.ImagePositionPatient = [-size * spacing / 2, -size * spacing / 2, -index * thickness]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = -index * thickness
        ds.SliceThickness = thickness
        ds.PixelSpacing = [spacing, spacing]
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = [-600, 40]
        ds.WindowWidth = [1500, 400]
        ds.WindowCenterWidthExplanation = ["LUNG", "MEDIASTINUM"]
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = stored.tobytes()
        if jpegls:
            ds.compress(JPEGLSLossless, stored)
        path = folder / f"{index + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
