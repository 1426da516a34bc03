"""De-identification: the external copy carries no identity, keeps geometry, and is consistent."""

from __future__ import annotations

import io
from datetime import date, datetime
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    generate_uid,
)

from server.imaging.deid import Deidentifier, DeidPolicy, burned_in
from server.imaging.phantom import PhantomPatient, write_ct_series
from server.imaging.store import frame_runs, parse

KEY = bytes(range(32))
PSEUDONYM = "EB-2026-0042"
PATIENT = PhantomPatient()
CHINESE_NAME = "王^小明"
CHINESE_PIECES = ("王", "小明", "张", "伟")


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_ct_series(tmp_path_factory.mktemp("ct"), slices=3, size=32)


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _image(charset: str | list[str] = "ISO_IR 192") -> Dataset:
    """A small CT instance built by hand; its pixels are zeros, so byte searches are exact."""
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientID = "HZ77777777"
    ds.StudyDate = "20240110"
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(32)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _reference(uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = uid
    return item


def _found(data: bytes, values: list[str], encodings: tuple[str, ...] = ("utf-8",)) -> list[str]:
    """The values found in ``data`` in any of ``encodings`` (empty when all are gone)."""
    return [
        f"{value!r} as {encoding}"
        for value in values
        for encoding in encodings
        if value.encode(encoding) in data
    ]


def test_no_identifying_value_survives_in_the_written_file(series: list[Path]) -> None:
    ds = pydicom.dcmread(series[0])
    ds.OtherPatientIDs = "OPID-991122"
    ds.PatientAddress = "18 Jiefang Road, Hangzhou"
    ds.PatientTelephoneNumbers = "0571-8888 1234"
    ds.InstitutionAddress = "79 Qingchun Road"
    ds.OperatorsName = "Chen^Jing"
    ds.PerformingPhysicianName = "Liu^Yang"
    ds.StationName = "HZCT01"
    ds.DeviceSerialNumber = "SN-4455667"
    originals = [
        PATIENT.name, "Wang", "Fang", PATIENT.mrn, PATIENT.birth_date.strftime("%Y%m%d"),
        str(ds.AccessionNumber), "Hangzhou First Hospital", "Zhang^Wei", "Zhang",
        str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
        str(ds.FrameOfReferenceUID), str(ds.StudyDate), "OPID-991122", "Jiefang", "Qingchun",
        "8888 1234", "Chen^Jing", "Liu^Yang", "HZCT01", "SN-4455667",
    ]  # fmt: skip
    data = _bytes(Deidentifier(KEY).deidentify(ds, pseudonym=PSEUDONYM))
    assert _found(data, originals, ("utf-8", "latin-1")) == []
    out = pydicom.dcmread(io.BytesIO(data))
    assert out.PatientName == PSEUDONYM and out.PatientID == PSEUDONYM
    assert out.PatientIdentityRemoved == "YES"


@pytest.mark.parametrize(
    ("charset", "escape"),
    [
        ("GB18030", False),
        ("GBK", False),
        (["", "ISO 2022 IR 58"], True),
        (["", "ISO 2022 IR 58"], False),
        (None, False),
    ],
    ids=["GB18030", "GBK", "ISO 2022 IR 58", "IR 58 without escapes", "GB18030 undeclared"],
)
def test_a_chinese_name_is_gone_in_every_encoding(
    charset: str | list[str] | None, escape: bool
) -> None:
    ds = _image(charset or "ISO_IR 6")
    if charset is None:  # as some modalities write it: GB18030 bytes, no character set
        del ds.SpecificCharacterSet

    def wire(text: str) -> bytes:
        # The bytes exactly as a modality writes them; IR 58 designates GB2312 with ESC $ ) A.
        encoded = text.encode("gbk" if charset == "GBK" else "gb18030")
        return b"\x1b$)A" + encoded if escape else encoded

    ds.PatientName = b"Wang^Xiaoming=" + wire(CHINESE_NAME)
    ds.ReferringPhysicianName = wire("张^伟")
    ds.StudyDescription = wire("胸部CT增强 王小明")
    ds.ImageComments = wire("王小明 复查")
    ds.Manufacturer = wire("东软医疗")
    original = _bytes(ds)
    assert "小明".encode("gb18030") in original  # GB2312 bytes: the same in all three sets
    parsed = pydicom.dcmread(io.BytesIO(original))  # raw elements, decoded only on access

    out = Deidentifier(KEY).deidentify(parsed, pseudonym=PSEUDONYM)
    data = _bytes(out)

    assert _found(data, list(CHINESE_PIECES), ("utf-8", "gb18030", "gbk", "gb2312")) == []
    assert out.SpecificCharacterSet == "ISO_IR 192"
    again = pydicom.dcmread(io.BytesIO(data))
    # Decoded before cleaning: the Chinese terms were understood, not dropped as noise.
    assert again.StudyDescription == "CHEST CT CONTRAST"
    assert again.Manufacturer == "东软医疗"  # kept text is re-encoded as UTF-8
    assert "东软医疗".encode() in data and "东软医疗".encode("gb18030") not in data


def test_uids_map_consistently_across_a_series_and_inside_references(series: list[Path]) -> None:
    originals = [pydicom.dcmread(p) for p in series]
    first = [Deidentifier(KEY).deidentify(ds, pseudonym=PSEUDONYM) for ds in originals]
    second = [Deidentifier(KEY).deidentify(ds, pseudonym=PSEUDONYM) for ds in originals]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({str(ds[keyword].value) for ds in first + second}) == 1
        assert first[0][keyword].value != originals[0][keyword].value
    sops = [str(ds.SOPInstanceUID) for ds in first]
    assert len(set(sops)) == 3 and sops == [str(ds.SOPInstanceUID) for ds in second]
    for ds in first:
        uid = str(ds.SOPInstanceUID)
        assert UID(uid).is_valid and uid.startswith("2.25.") and len(uid) <= 64
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == CTImageStorage

    derived = pydicom.dcmread(series[0])
    derived.SOPInstanceUID = derived.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    derived.ReferencedImageSequence = [_reference(originals[1].SOPInstanceUID)]
    derived.SourceImageSequence = [_reference(originals[2].SOPInstanceUID)]
    series_item = Dataset()
    series_item.SeriesInstanceUID = originals[0].SeriesInstanceUID
    series_item.ReferencedInstanceSequence = [_reference(originals[0].SOPInstanceUID)]
    derived.ReferencedSeriesSequence = [series_item]

    out = Deidentifier(KEY).deidentify(derived, pseudonym=PSEUDONYM)

    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first[1].SOPInstanceUID
    assert out.ReferencedImageSequence[0].ReferencedSOPClassUID == CTImageStorage
    assert out.SourceImageSequence[0].ReferencedSOPInstanceUID == first[2].SOPInstanceUID
    referenced = out.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == first[0].SeriesInstanceUID
    assert referenced.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == sops[0]
    other_key = Deidentifier(bytes(32)).deidentify(originals[0], pseudonym=PSEUDONYM)
    assert other_key.StudyInstanceUID != first[0].StudyInstanceUID


def test_private_tags_are_removed_everywhere() -> None:
    ds = _image()
    ds.private_block(0x0009, "ACME 1.0", create=True).add_new(0x01, "LO", "Wang^Fang")
    item = _reference(generate_uid())
    item.private_block(0x0011, "ACME 1.0", create=True).add_new(0x02, "SH", "HZ00012345")
    ds.ReferencedImageSequence = [item]

    out = Deidentifier(KEY).deidentify(ds, pseudonym=PSEUDONYM)

    private: list[str] = []
    out.walk(lambda _, elem: private.append(str(elem.tag)) if elem.tag.is_private else None)
    assert private == []
    assert _found(_bytes(out), ["ACME", "Wang", "HZ00012345"]) == []


def test_the_method_code_sequence_names_the_profile_and_the_options_used() -> None:
    out = Deidentifier(KEY).deidentify(_image(), pseudonym=PSEUDONYM)
    items = out.DeidentificationMethodCodeSequence
    codes = {(item.CodeValue, item.CodingSchemeDesignator) for item in items}
    assert codes == {("113100", "DCM"), ("113108", "DCM"), ("113105", "DCM"), ("113107", "DCM")}
    assert out.PatientIdentityRemoved == "YES"
    assert "Clean Descriptors Option" in out.DeidentificationMethod
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"


def test_the_basic_profile_alone_removes_what_the_options_would_keep() -> None:
    ds = _image()
    ds.PatientSex = "F"
    ds.PatientWeight = 58
    ds.StudyDescription = "CT CHEST"
    ds.SeriesDate = "20240110"
    basic = DeidPolicy(
        retain_patient_characteristics=False, clean_descriptors=False, modified_dates=False
    )

    out = Deidentifier(KEY, basic).deidentify(ds, pseudonym=PSEUDONYM)

    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == ["113100"]
    assert out.PatientSex == "" and "PatientWeight" not in out and "PatientAge" not in out
    assert "StudyDescription" not in out and "SeriesDate" not in out
    assert out.StudyDate == ""
    assert out.LongitudinalTemporalInformationModified == "REMOVED"


def test_dates_shift_by_one_offset_per_patient_and_intervals_are_kept(tmp_path: Path) -> None:
    days = [date(2024, 1, 10), date(2024, 3, 1)]
    studies = [
        pydicom.dcmread(write_ct_series(tmp_path / str(i), slices=1, size=16, study_date=d)[0])
        for i, d in enumerate(days)
    ]
    studies[0].AcquisitionDateTime = "20240110093512.123456+0800"
    deid = Deidentifier(KEY)

    outs = [deid.deidentify(ds, pseudonym=PSEUDONYM) for ds in studies]

    shifted = [datetime.strptime(str(o.StudyDate), "%Y%m%d").date() for o in outs]
    offset = deid.date_offset(PATIENT.mrn)
    assert [s - d for s, d in zip(shifted, days, strict=True)] == [offset, offset]
    assert shifted[1] - shifted[0] == days[1] - days[0]
    assert offset.days <= -365
    assert outs[0].SeriesDate == outs[0].StudyDate == outs[0].ContentDate
    assert outs[0].StudyTime == "093000"  # whole days move; the time of day stays
    expected = (days[0] + offset).strftime("%Y%m%d") + "093512.123456+0800"
    assert outs[0].AcquisitionDateTime == expected
    assert outs[0].PatientBirthDate == ""
    assert outs[0].PatientAge == "062Y"  # from the real dates, before they moved
    assert deid.date_offset("HZ00099999") != offset


@pytest.mark.parametrize("jpegls", [False, True], ids=["native", "jpeg-ls"])
def test_geometry_and_pixel_data_are_kept(tmp_path: Path, jpegls: bool) -> None:
    path = write_ct_series(tmp_path, slices=2, size=32, jpegls=jpegls)[1]
    ds = pydicom.dcmread(path)

    out = pydicom.dcmread(io.BytesIO(_bytes(Deidentifier(KEY).deidentify(ds, pseudonym="X1"))))

    for keyword in (
        "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
        "SliceLocation", "Rows", "Columns", "RescaleIntercept", "RescaleSlope",
        "WindowCenter", "WindowWidth", "BitsStored",
    ):  # fmt: skip
        assert out[keyword].value == ds[keyword].value, keyword
    assert out.PixelData == ds.PixelData
    assert out.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID


def test_descriptors_are_cleaned_to_a_vocabulary_not_kept_verbatim() -> None:
    ds = _image()
    ds.StudyDescription = "CT chest for Wang Fang HZ00012345 2.5mm"
    ds.SeriesDescription = "Dr Zhang's special"
    ds.ProtocolName = "Routine chest C+ (Hangzhou First Hospital)"

    out = Deidentifier(KEY).deidentify(ds, pseudonym=PSEUDONYM)

    assert out.StudyDescription == "CT chest 2.5mm"
    assert "SeriesDescription" not in out  # nothing of it was known to be safe
    assert out.ProtocolName == "Routine chest C+"


def test_an_identifier_repeated_in_an_unlisted_attribute_is_blanked() -> None:
    ds = _image()
    ds.PatientName = "Wang^Fang"
    ds.Manufacturer = "Wang Fang Imaging"
    ds.ManufacturerModelName = "Model HZ77777777"
    ds.RetrieveURL = f"https://pacs.example.cn/studies/{ds.StudyInstanceUID}"
    ds.ConvolutionKernel = "B30f"

    out = Deidentifier(KEY).deidentify(ds, pseudonym=PSEUDONYM)

    assert out.Manufacturer == "" and out.ManufacturerModelName == ""
    assert "RetrieveURL" not in out
    assert out.ConvolutionKernel == "B30f"


@pytest.mark.parametrize(
    ("sop_class", "attributes", "expected"),
    [
        (SecondaryCaptureImageStorage, {}, True),
        (UltrasoundImageStorage, {}, True),
        (SecondaryCaptureImageStorage, {"BurnedInAnnotation": "NO"}, False),
        (CTImageStorage, {"BurnedInAnnotation": "YES"}, True),
        (CTImageStorage, {}, False),
        (CTImageStorage, {"ConversionType": "WSD"}, True),
        (CTImageStorage, {"ImageType": ["DERIVED", "SECONDARY", "SCREEN SAVE"]}, True),
    ],
    ids=["sc", "us", "sc-no", "ct-yes", "ct", "workstation", "screen-save"],
)
def test_burned_in_is_assumed_for_sc_us_and_screen_saves(
    sop_class: str, attributes: dict[str, object], expected: bool
) -> None:
    ds = _image()
    ds.SOPClassUID = sop_class
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    assert burned_in(ds) is expected


def test_the_input_dataset_is_not_modified(series: list[Path]) -> None:
    ds = pydicom.dcmread(series[0])
    ds.ReferencedImageSequence = [_reference(generate_uid())]
    before = _bytes(ds)
    name, sop = str(ds.PatientName), str(ds.SOPInstanceUID)

    Deidentifier(KEY).deidentify(ds, pseudonym=PSEUDONYM)

    assert _bytes(ds) == before
    assert str(ds.PatientName) == name and str(ds.SOPInstanceUID) == sop
    assert ds.file_meta.MediaStorageSOPInstanceUID == sop


def test_an_upload_parsed_by_the_store_is_deidentified_and_left_usable(series: list[Path]) -> None:
    data = series[0].read_bytes()
    parsed = parse("0001.dcm", data)
    runs = frame_runs(io.BytesIO(data), parsed.dataset, parsed.transfer_syntax)

    out = Deidentifier(KEY).deidentify(parsed.dataset, pseudonym=PSEUDONYM)

    assert out.PixelData == pydicom.dcmread(io.BytesIO(data)).PixelData  # deferred, still read
    assert frame_runs(io.BytesIO(data), parsed.dataset, parsed.transfer_syntax) == runs


def test_a_short_key_or_a_bad_pseudonym_is_refused() -> None:
    with pytest.raises(ValueError, match="16"):
        Deidentifier(b"short")
    with pytest.raises(ValueError, match="pseudonym"):
        Deidentifier(KEY).deidentify(_image(), pseudonym="a\\b")
    with pytest.raises(ValueError, match="pseudonym"):
        Deidentifier(KEY).deidentify(_image(), pseudonym="")
