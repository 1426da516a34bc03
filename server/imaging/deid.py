"""Deidentifier: the copy of a DICOM instance that external board members may see.

PS3.15 Annex E Basic Application Level Confidentiality Profile, with the actions of Table E.1-1
taken from the `dicom-anonymizer` package's 2026c table, plus three options chosen by policy:
Retain Patient Characteristics, Clean Descriptors and Retain Longitudinal Temporal Information
with Modified Dates. Instance UIDs are replaced by a keyed, deterministic map, so every copy of a
series, and every reference to it, agrees. Geometry and pixel data are kept as they are, so
annotations line up between the internal and the external copy.

Pure and synchronous: no I/O, no database; the caller decides where the copy goes.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from types import MappingProxyType
from typing import Any, Final

from dicomanonymizer.dicom_anonymization_databases import (  # type: ignore[import-untyped]
    dicomfields_2026c as _rules,
)
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import PersonName

__all__ = ["RULES_EDITION", "DeidPolicy", "Deidentifier", "burned_in"]

RULES_EDITION: Final = "2026c"  # DICOM edition of dicom-anonymizer's Table E.1-1

# The package's groups, as the one action each resolves to for an image: where the standard
# leaves a choice, the zero-length value (Z) wins when an IOD might require the attribute, and
# removal (X) when it would not; X/Z/U* sequences are kept with their UIDs replaced.
_GROUP_ACTIONS = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z",
    "X_Z_TAGS": "Z", "X_D_TAGS": "X", "X_Z_D_TAGS": "Z", "X_Z_U_STAR_TAGS": "U*",
}  # fmt: skip


def _load_rules() -> tuple[dict[int, str], tuple[tuple[int, int, str], ...]]:
    exact: dict[int, str] = {}
    masked: list[tuple[int, int, str]] = []
    for group, action in _GROUP_ACTIONS.items():
        for entry in getattr(_rules, group):
            if len(entry) == 2:
                exact[entry[0] << 16 | entry[1]] = action
            else:  # repeating groups such as (50xx,xxxx): (group, element, group & element masks)
                masked.append((entry[0] << 16 | entry[1], entry[2] << 16 | entry[3], action))
    return exact, tuple(masked)


_EXACT, _MASKED = _load_rules()
_BASIC: Final = MappingProxyType(_EXACT)


def _tags(*keywords: str) -> frozenset[int]:
    return frozenset(int(t) for t in (tag_for_keyword(k) for k in keywords) if t is not None)


# Table E.1-1, column "Rtn. Pat. Chars. Opt.": the K entries. Its C entries (allergies, patient
# state, pre-medication, special needs) are free text and stay removed.
_PATIENT_CHARACTERISTICS = _tags(
    "PatientSex", "PatientAge", "PatientSize", "PatientWeight", "EthnicGroup",
    "PatientSexNeutered", "PregnancyStatus", "SmokingStatus",
)  # fmt: skip

# Table E.1-1, column "Clean Desc. Opt.": descriptors cleaned rather than removed. Sequences and
# binary values among them are removed: only text is cleaned.
_DESCRIPTORS = _tags(
    "AcquisitionComments", "AcquisitionDeviceProcessingDescription", "AcquisitionFieldOfViewLabel",
    "AcquisitionProtocolDescription", "AdditionalPatientHistory", "AdmittingDiagnosesDescription",
    "Allergies", "BeamDescription", "BolusDescription", "ClinicalTrialSeriesDescription",
    "ClinicalTrialTimePointDescription", "CommentsOnRadiationDose",
    "CommentsOnThePerformedProcedureStep", "CompensatorDescription",
    "ConceptualVolumeCombinationDescription", "ConceptualVolumeDescription",
    "ContainerDescription", "ContrastBolusAgent", "ContributionDescription",
    "DecompositionDescription", "DerivationDescription", "DischargeDiagnosisDescription",
    "DoseReferenceDescription", "EntityDescription", "EntityLabel", "EntityLongLabel",
    "EntityName", "EquipmentFrameOfReferenceDescription", "FixationDeviceDescription",
    "FractionGroupDescription", "FractionationNotes", "FrameComments", "IdentifyingComments",
    "ImageComments", "ImagingServiceRequestComments", "Impressions", "InterlockDescription",
    "InterlockOriginDescription", "InterpretationDiagnosisDescription", "InterpretationText",
    "LabelText", "LongDeviceDescription", "MedicalAlerts", "MultienergyAcquisitionDescription",
    "Occupation", "PatientComments", "PatientState", "PerformedProcedureStepDescription",
    "PrescriptionDescription", "PrescriptionNotes", "PriorTreatmentDoseDescription",
    "ProtocolName", "ROIDescription", "ROIGenerationDescription", "ROIName",
    "ROIObservationDescription", "ROIObservationLabel", "RTPhysicianIntentNarrative",
    "RTPlanDescription", "RTPlanLabel", "RTPlanName", "RTPrescriptionLabel",
    "RTToleranceSetLabel", "RTTreatmentApproachLabel", "RadiationDoseIdentificationLabel",
    "RadiationDoseInVivoMeasurementLabel", "RadiationGenerationModeDescription",
    "RadiationGenerationModeLabel", "ReasonForOmissionDescription", "ReasonForStudy",
    "ReasonForSuperseding", "ReasonForTheImagingServiceRequest",
    "ReasonForTheRequestedProcedure", "ReasonForVisit", "RequestedContrastAgent",
    "RequestedProcedureComments", "RequestedProcedureDescription", "RequestedSeriesDescription",
    "RespiratoryMotionCompensationTechniqueDescription", "ResultsComments",
    "ScheduledProcedureStepDescription", "SeriesDescription", "ServiceEpisodeDescription",
    "SetupTechniqueDescription", "ShieldingDeviceDescription", "SpecimenDetailedDescription",
    "SpecimenShortDescription", "StructureSetDescription", "StructureSetLabel",
    "StructureSetName", "StudyComments", "StudyDescription", "TreatmentPositionGroupLabel",
    "TreatmentSite", "TreatmentTechniqueNotes", "TreatmentToleranceViolationDescription",
    "UserContentLabel", "UserContentLongLabel", "VisitComments",
    "AdmittingDiagnosesCodeSequence", "PrescriptionNotesSequence",
    "ReasonForRequestedProcedureCodeSequence", "ReasonForVisitCodeSequence",
    "RequestAttributesSequence", "DeviceSettingDescription", "MakerNote",
)  # fmt: skip

# Written by us at the top level; whatever the input had is dropped.
_OURS = _tags(
    "SpecificCharacterSet", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence", "LongitudinalTemporalInformationModified",
)  # fmt: skip
_PSEUDONYMOUS = _tags("PatientName", "PatientID")
_BIRTH = _tags("PatientBirthDate", "PatientBirthTime")
# UIDs that name a class, syntax or coding scheme, not an instance: never remapped.
_CONCEPT_UIDS = _tags(
    "SOPClassUID", "ReferencedSOPClassUID", "ReferencedSOPClassUIDInFile", "TransferSyntaxUID",
    "ReferencedTransferSyntaxUIDInFile", "CodingSchemeUID", "ContextUID", "MappingResourceUID",
    "ContextGroupExtensionCreatorUID", "RelatedGeneralSOPClassUID",
    "OriginalSpecializedSOPClassUID", "ImplementationClassUID", "MediaStorageSOPClassUID",
)  # fmt: skip
_DICOM_ROOT = "1.2.840.10008."
_ID_KEYWORDS = (
    "PatientID", "OtherPatientIDs", "AccessionNumber", "MedicalRecordLocator", "PatientBirthDate",
    "IssuerOfPatientID", "AdmissionID", "ServiceEpisodeID", "RequestedProcedureID",
)  # fmt: skip
_SWEPT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_DUMMIES = MappingProxyType(
    {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "PN": "ANONYMOUS", "IS": "0",
     "DS": "0", "UR": "ANONYMIZED"}
)  # fmt: skip

# CID 7050 (De-identification Method), scheme DCM.
_BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
_PATIENT_CHARACTERISTICS_OPTION = ("113108", "Retain Patient Characteristics Option")
_CLEAN_DESCRIPTORS_OPTION = ("113105", "Clean Descriptors Option")
_MODIFIED_DATES_OPTION = (
    "113107",
    "Retain Longitudinal Temporal Information Modified Dates Option",
)

# Clean Descriptors keeps only words from this vocabulary (and small numbers): a descriptor
# says what was imaged and how, never who or where.
_VOCABULARY = frozenset(
    """
    CT CTA MR MRI PET SPECT NM US CR DX XR MG SR RT OT PT SC 3D 2D 4D MPR MIP MINIP VR VRT
    HEAD BRAIN SKULL FACE ORBIT ORBITS SINUS SINUSES NECK THYROID CHEST THORAX LUNG LUNGS
    PULMONARY HEART CARDIAC CORONARY AORTA MEDIASTINUM MEDIASTINAL BREAST ABDOMEN ABDOMINAL
    PELVIS PELVIC LIVER HEPATIC PANCREAS SPLEEN KIDNEY KIDNEYS RENAL ADRENAL BLADDER PROSTATE
    UTERUS OVARY COLON RECTUM RECTAL BOWEL STOMACH ESOPHAGUS SPINE CERVICAL THORACIC LUMBAR
    SACRUM BONE BONES EXTREMITY SHOULDER ARM ELBOW WRIST HAND HIP KNEE ANKLE FOOT WHOLE BODY
    UPPER LOWER LEFT RIGHT BILATERAL AXIAL AX CORONAL COR SAGITTAL SAG OBLIQUE TRANSVERSE
    WITH WITHOUT AND OR OF THE TO NON NONCONTRAST CONTRAST C+ IV ORAL ENHANCED UNENHANCED
    PLAIN NATIVE PRE POST ARTERIAL VENOUS PORTAL DELAYED EARLY LATE PHASE PERFUSION DYNAMIC
    SOFT TISSUE WINDOW STANDARD SHARP SMOOTH KERNEL RECON RECONSTRUCTION REFORMAT THIN THICK
    SLICE SLICES SCOUT LOCALIZER TOPOGRAM SURVIEW ROUTINE SCREENING STAGING FOLLOW UP LOW DOSE
    HIGH RESOLUTION HRCT ANGIO ANGIOGRAPHY PROTOCOL SERIES STUDY HELICAL SPIRAL SEQUENTIAL
    INSPIRATION EXPIRATION T1 T2 FLAIR DWI ADC SWI STIR GRE TSE FSE FS FAT SAT DIXON
    MM CM ISO JPEG LS LOSSLESS LOSSY
    """.split()
)
_CHINESE_VOCABULARY = MappingProxyType(
    {
        "胸部": "CHEST", "腹部": "ABDOMEN", "上腹部": "UPPER ABDOMEN", "下腹部": "LOWER ABDOMEN",
        "全腹": "ABDOMEN", "盆腔": "PELVIS", "头颅": "HEAD", "头部": "HEAD", "颅脑": "BRAIN",
        "颈部": "NECK", "肺": "LUNG", "肝": "LIVER", "肝脏": "LIVER", "肾": "KIDNEY",
        "胰腺": "PANCREAS", "脊柱": "SPINE", "乳腺": "BREAST", "平扫": "NON CONTRAST",
        "增强": "CONTRAST", "轴位": "AXIAL", "冠状位": "CORONAL", "矢状位": "SAGITTAL",
        "肺窗": "LUNG WINDOW", "纵隔窗": "MEDIASTINAL WINDOW", "骨窗": "BONE WINDOW",
        "软组织": "SOFT TISSUE", "动脉期": "ARTERIAL PHASE", "静脉期": "VENOUS PHASE",
        "门脉期": "PORTAL PHASE", "延迟期": "DELAYED PHASE", "薄层": "THIN", "重建": "RECON",
        "定位像": "LOCALIZER", "低剂量": "LOW DOSE", "高分辨": "HIGH RESOLUTION",
        "血管造影": "ANGIOGRAPHY", "三维": "3D",
    }
)  # fmt: skip
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:\.[0-9]+)?(?:[A-Za-z]+)?\+?|[\u3400-\u9fff]+")
_SMALL_NUMBER = re.compile(r"\d{1,3}(?:\.\d{1,3})?(?:MM|CM)?", re.IGNORECASE)
_DT = re.compile(r"(\d{8})(\d{0,6}(?:\.\d{1,6})?)([+-]\d{4})?")
_ESCAPE = re.compile(r"\x1b[\x20-\x2f]*[\x30-\x7e]")  # ISO 2022 escape sequence
# Declared character sets read otherwise, as (declared, read as). A modality that declares the
# default repertoire may well write GB18030, a superset of ASCII, so conformant data reads the
# same. ISO 2022 IR 58 is read as a single GB2312 set: GB2312 runs then decode with or without
# their escape sequences (pydicom keeps those in the text; they are stripped below).
_READ_AS = (
    (frozenset({"", "ISO_IR 6", "ISO 2022 IR 6"}), "GB18030", "GB18030"),
    (frozenset({"", "ISO 2022 IR 6", "ISO 2022 IR 58"}), "ISO 2022 IR 58", "iso_ir_58"),
)

_BURNED_IN_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # secondary capture
        "1.2.840.10008.5.1.4.1.1.7.1",  # multi-frame single bit SC
        "1.2.840.10008.5.1.4.1.1.7.2",  # multi-frame grayscale byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # multi-frame grayscale word SC
        "1.2.840.10008.5.1.4.1.1.7.4",  # multi-frame true color SC
        "1.2.840.10008.5.1.4.1.1.6",  # ultrasound (retired)
        "1.2.840.10008.5.1.4.1.1.6.1",  # ultrasound
        "1.2.840.10008.5.1.4.1.1.6.2",  # enhanced US volume
        "1.2.840.10008.5.1.4.1.1.3",  # ultrasound multi-frame (retired)
        "1.2.840.10008.5.1.4.1.1.3.1",  # ultrasound multi-frame
    }
)


def burned_in(ds: Dataset) -> bool:
    """Whether the pixels may show text: withheld from external participants until cleared.

    BurnedInAnnotation (0028,0301) YES, or a secondary capture, ultrasound or screen save that
    does not say NO.
    """
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag in ("YES", "NO"):
        return flag == "YES"
    image_type = [str(v).upper() for v in _values(ds.get("ImageType"))]
    return (
        str(ds.get("SOPClassUID", "")) in _BURNED_IN_CLASSES
        or str(ds.get("Modality", "")).upper() == "US"
        or str(ds.get("ConversionType", "")).upper() == "WSD"  # workstation: a screen save
        or any("SCREEN" in v for v in image_type)
    )


@dataclass(frozen=True)
class DeidPolicy:
    """Which PS3.15 options a board's external copy uses, on top of the Basic Profile."""

    retain_patient_characteristics: bool = True  # sex, age, size, weight, …
    clean_descriptors: bool = True  # descriptions cleaned to a vocabulary, not removed
    modified_dates: bool = True  # dates shifted by a per-patient offset, intervals kept
    shift_days: tuple[int, int] = (365, 3650)  # the offset's range, backwards in time

    def __post_init__(self) -> None:
        low, high = self.shift_days
        if not 1 <= low <= high:
            raise ValueError(f"shift_days must be 1 <= low <= high, not {self.shift_days}")

    @property
    def codes(self) -> list[tuple[str, str]]:
        """CID 7050 (code value, meaning) of the profile and each option used."""
        used = [_BASIC_PROFILE]
        if self.retain_patient_characteristics:
            used.append(_PATIENT_CHARACTERISTICS_OPTION)
        if self.clean_descriptors:
            used.append(_CLEAN_DESCRIPTORS_OPTION)
        if self.modified_dates:
            used.append(_MODIFIED_DATES_OPTION)
        return used


class Deidentifier:
    """Makes de-identified copies under one key: the same key maps a UID the same way forever."""

    def __init__(self, key: bytes, policy: DeidPolicy | None = None) -> None:
        if len(key) < 16:
            raise ValueError(f"the de-identification key has {len(key)} bytes; it needs 16+")
        self._key = key
        self.policy = policy or DeidPolicy()

    def uid(self, original: str) -> UID:
        """The replacement of an instance UID: 2.25 + a UUID (version 8) from HMAC-SHA256."""
        digest = self._mac(b"uid", original.strip().rstrip("\0"))
        value = int.from_bytes(digest[:16], "big")
        value = (value & ~(0xF000 << 64)) | (8 << 76)  # version 8: custom
        value = (value & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
        return UID(f"2.25.{value}")

    def date_offset(self, patient_id: str) -> timedelta:
        """How far back this patient's dates move; the same for all of the patient's studies."""
        low, high = self.policy.shift_days
        number = int.from_bytes(self._mac(b"date", patient_id)[:8], "big")
        return -timedelta(days=low + number % (high - low + 1))

    def deidentify(self, ds: Dataset, *, pseudonym: str) -> Dataset:
        """A new, de-identified dataset; ``ds`` is left as it was.

        ``pseudonym`` (e.g. the case's pseudonymous number) becomes PatientName and PatientID.
        The copy is encoded in UTF-8 (ISO_IR 192) whatever the input's character set was.
        """
        if not pseudonym or len(pseudonym) > 64 or re.search(r"[\\\x00-\x1f]", pseudonym):
            raise ValueError(f"pseudonym {pseudonym!r} is not a 1-64 character LO value")
        work = copy.deepcopy(ds)
        _decode(work)
        patient = str(work.get("PatientID", "") or "").strip() or pseudonym
        issuer = str(work.get("IssuerOfPatientID", "") or "").strip()
        cleaning = _Cleaning(
            self,
            pseudonym=pseudonym,
            offset=self.date_offset(f"{issuer}^{patient}" if issuer else patient),
            identifiers=_identifiers(work),
        )
        out = cleaning.dataset(work)
        self._stamp(out, work)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            out.file_meta = self._file_meta(meta, out)
        return out

    def _mac(self, purpose: bytes, text: str) -> bytes:
        return hmac.new(self._key, purpose + b"\0" + text.encode("utf-8"), hashlib.sha256).digest()

    def _stamp(self, out: Dataset, original: Dataset) -> None:
        policy = self.policy
        out.SpecificCharacterSet = "ISO_IR 192"
        if policy.retain_patient_characteristics and "PatientAge" not in out:
            age = _age(original)
            if age:
                out.PatientAge = age
        out.PatientIdentityRemoved = "YES"
        out.DeidentificationMethod = [
            f"eBoard, PS3.15 Table E.1-1 {RULES_EDITION}",
            *(meaning for _, meaning in policy.codes),
        ]
        items = []
        for value, meaning in policy.codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        out.DeidentificationMethodCodeSequence = items
        out.LongitudinalTemporalInformationModified = (
            "MODIFIED" if policy.modified_dates else "REMOVED"
        )

    def _file_meta(self, meta: FileMetaDataset, out: Dataset) -> FileMetaDataset:
        # A fresh header: the original's source AE title and implementation names go.
        fresh = FileMetaDataset()
        if "SOPClassUID" in out:
            fresh.MediaStorageSOPClassUID = out.SOPClassUID
        original = str(meta.get("MediaStorageSOPInstanceUID", "") or "")
        if original:
            fresh.MediaStorageSOPInstanceUID = self.uid(original)
        elif "SOPInstanceUID" in out:
            fresh.MediaStorageSOPInstanceUID = out.SOPInstanceUID
        if "TransferSyntaxUID" in meta:
            fresh.TransferSyntaxUID = meta.TransferSyntaxUID
        return fresh


class _Cleaning:
    """One deidentify call: walks a decoded dataset and builds its clean copy."""

    def __init__(
        self,
        deidentifier: Deidentifier,
        *,
        pseudonym: str,
        offset: timedelta,
        identifiers: list[re.Pattern[str]],
    ) -> None:
        self._deid = deidentifier
        self._policy = deidentifier.policy
        self._pseudonym = pseudonym
        self._offset = offset
        self._identifiers = identifiers

    def dataset(self, source: Dataset) -> Dataset:
        out = Dataset()
        for elem in source:
            clean = self._element(elem)
            if clean is not None:
                out.add(clean)
        return out

    def _element(self, elem: DataElement) -> DataElement | None:
        tag, vr = elem.tag, elem.VR
        if tag.is_private or tag.element == 0 or tag in _OURS:
            return None
        if tag in _PSEUDONYMOUS:
            return DataElement(tag, vr, self._pseudonym)
        action = self._action(tag, vr)
        if action == "X":
            return None
        if action == "Z":
            return DataElement(tag, vr, empty_value_for_VR(vr))
        if action == "D":
            return self._dummy(elem)
        if action in ("U", "U?"):  # U?: a UID the table does not name
            always = action == "U"
            return _replace(elem, [self._uid(tag, str(v), always) for v in _values(elem.value)])
        if action == "S":
            return self._shifted(elem)
        if vr == "SQ":  # U* and sequences the table does not name: clean each item
            return DataElement(tag, vr, Sequence([self.dataset(item) for item in elem.value]))
        if action == "C":
            cleaned = [c for c in (_clean_text(str(v)) for v in _values(elem.value)) if c]
            return _replace(elem, cleaned) if cleaned else None
        return self._swept(elem)

    def _action(self, tag: BaseTag, vr: str) -> str:
        """The one action for ``tag``: options first, then the Basic Profile, then safety nets."""
        policy = self._policy
        if policy.retain_patient_characteristics and tag in _PATIENT_CHARACTERISTICS:
            return "K"
        if policy.clean_descriptors and tag in _DESCRIPTORS:
            return "C" if vr in _SWEPT_VRS else "X"
        if policy.modified_dates and vr in ("DA", "DT", "TM") and tag not in _BIRTH:
            return "S"
        if (action := _basic_action(tag)) is not None:
            return action
        if (tag.group & 0xFF01) == 0x6000:  # overlays: the table removes their data; drop all
            return "X"
        # Beyond the table: people's names, unmodified dates, links back to the source
        # system and values of unknown meaning never leave; unknown UIDs are replaced.
        return {"PN": "Z", "DA": "X", "DT": "X", "UR": "X", "UN": "X", "UI": "U?"}.get(vr, "K")

    def _uid(self, tag: BaseTag, value: str, always: bool) -> str:
        if not always and (tag in _CONCEPT_UIDS or value.startswith(_DICOM_ROOT)):
            return value
        return self._deid.uid(value)

    def _dummy(self, elem: DataElement) -> DataElement:
        tag, vr = elem.tag, elem.VR
        if vr == "UI":
            return _replace(elem, [self._deid.uid(str(v)) for v in _values(elem.value)])
        if vr in _DUMMIES:
            return DataElement(tag, vr, _DUMMIES[vr])
        if vr in _SWEPT_VRS:
            return DataElement(tag, vr, "ANONYMIZED")
        return DataElement(tag, vr, empty_value_for_VR(vr))  # numbers, bytes, sequences

    def _shifted(self, elem: DataElement) -> DataElement | None:
        if elem.VR == "TM":  # whole days move: the time of day stays
            return elem
        shift = _shift_date if elem.VR == "DA" else _shift_datetime
        values = [s for s in (shift(str(v), self._offset) for v in _values(elem.value)) if s]
        return _replace(elem, values) if values else None

    def _swept(self, elem: DataElement) -> DataElement:
        # Kept as is, unless the value repeats a name, ID, date of birth or UID of the original.
        if elem.VR in _SWEPT_VRS and any(
            p.search(str(v)) for v in _values(elem.value) for p in self._identifiers
        ):
            return DataElement(elem.tag, elem.VR, empty_value_for_VR(elem.VR))
        return elem


def _decode(ds: Dataset) -> None:
    """Turn every text value of ``ds`` (a private copy) into clean str, before any cleaning."""
    declared = {str(v).strip() for v in _values(ds.get("SpecificCharacterSet"))}
    for readable, term, codec in _READ_AS:
        if declared <= readable:
            ds.SpecificCharacterSet = term
            # Raw values decode with the codecs recorded when the file was read: those too.
            implicit, little = ds.original_encoding
            ds.set_original_encoding(implicit, little, [codec])
            break
    ds.decode()

    def strip(_: Dataset, elem: DataElement) -> None:
        values = [str(v) for v in _values(elem.value)] if elem.VR in _SWEPT_VRS else []
        if any("\x1b" in v for v in values):
            values = [_ESCAPE.sub("", v) for v in values]
            elem.value = values if len(values) > 1 else values[0]

    ds.walk(strip)


def _basic_action(tag: BaseTag) -> str | None:
    action = _BASIC.get(int(tag))
    if action is None:
        for value, mask, masked_action in _MASKED:
            if int(tag) & mask == value:
                return masked_action
    return action


def _values(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [value]


def _replace(elem: DataElement, values: list[Any]) -> DataElement:
    value: Any = values[0] if len(values) == 1 else values
    return DataElement(elem.tag, elem.VR, value if values else empty_value_for_VR(elem.VR))


def _identifiers(ds: Dataset) -> list[re.Pattern[str]]:
    """Patterns for what identifies the original: names of people, IDs, birth date, UIDs."""
    names: set[str] = set()
    literals: set[str] = set()

    def collect(_: Dataset, elem: DataElement) -> None:
        if elem.VR == "PN":
            for value in _values(elem.value):
                names.update(_name_parts(value))
        elif elem.VR == "UI" and int(elem.tag) not in _CONCEPT_UIDS:
            uids = (str(v) for v in _values(elem.value))
            literals.update(u for u in uids if not u.startswith(_DICOM_ROOT))

    ds.walk(collect)
    for keyword in _ID_KEYWORDS:
        literals.update(str(v).strip() for v in _values(ds.get(keyword)))
    patterns = [re.compile(re.escape(s), re.IGNORECASE) for s in literals if len(s.strip()) >= 3]
    for name in names:
        if re.fullmatch(r"[A-Za-z' .-]+", name):  # Latin: whole words only
            patterns.append(re.compile(rf"(?<![A-Za-z]){re.escape(name)}(?![A-Za-z])", re.I))
        else:
            patterns.append(re.compile(re.escape(name), re.IGNORECASE))
    return patterns


def _name_parts(value: Any) -> Iterable[str]:
    """The full name and its family, given and middle names, in every representation."""
    person = value if isinstance(value, PersonName) else PersonName(str(value))
    for group in person.components:
        parts = [p.strip() for p in group.split("^")[:3] if p.strip()]
        for candidate in (*parts, " ".join(parts), "".join(parts), group.strip()):
            if len(candidate) >= 2:
                yield candidate


def _clean_text(text: str) -> str:
    """Only vocabulary words, small numbers and translated Chinese terms survive."""
    kept: list[str] = []
    tokens = _TOKEN.findall(text)
    for token in tokens:
        if "\u3400" <= token[0] <= "\u9fff":
            kept.extend(_translate(token))
        elif token.upper() in _VOCABULARY or _SMALL_NUMBER.fullmatch(token):
            kept.append(token)
    return " ".join(kept)[:64]


def _translate(run: str) -> Iterable[str]:
    # Longest known term first; characters of no known term are dropped, never copied.
    longest = max(len(term) for term in _CHINESE_VOCABULARY)
    i = 0
    while i < len(run):
        for size in range(min(longest, len(run) - i), 0, -1):
            if run[i : i + size] in _CHINESE_VOCABULARY:
                yield _CHINESE_VOCABULARY[run[i : i + size]]
                i += size
                break
        else:
            i += 1


def _parse_date(text: str) -> date | None:
    digits = text.strip().replace(".", "")  # ACR-NEMA wrote YYYY.MM.DD
    if not re.fullmatch(r"\d{8}", digits):
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _shift_date(text: str, offset: timedelta) -> str:
    day = _parse_date(text)
    return (day + offset).strftime("%Y%m%d") if day else ""


def _shift_datetime(text: str, offset: timedelta) -> str:
    match = _DT.fullmatch(text.strip())
    day = _parse_date(match.group(1)) if match else None
    if match is None or day is None:
        return ""  # less than a day's precision cannot be shifted by days: drop it
    return (day + offset).strftime("%Y%m%d") + match.group(2) + (match.group(3) or "")


def _age(ds: Dataset) -> str | None:
    """PatientAge from the birth date and the study's date, as DICOM AS."""
    birth = _parse_date(str(ds.get("PatientBirthDate", "") or ""))
    on = next(
        (d for k in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
         if (d := _parse_date(str(ds.get(k, "") or ""))) is not None),
        None,
    )  # fmt: skip
    if birth is None or on is None or on < birth:
        return None
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    if years >= 1:
        return f"{min(years, 999):03d}Y"
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    return f"{months:03d}M" if months >= 1 else f"{(on - birth).days:03d}D"
