"""The PDF's own words in English and Chinese (template labels come from the TemplateSet)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["WORDS", "LANGUAGE_NAMES", "SEXES", "SPECIALTIES", "SYSTEMS"]

# The document's own words; template labels come from the TemplateSet.
WORDS: Final[Mapping[str, Mapping[str, str]]] = {
    "title": {
        "en": "Agreed plan — version {version}",
        "zh-CN": "多学科诊疗共识意见 — 第{version}版",
    },
    "case": {"en": "Case", "zh-CN": "病例编号"},
    "board": {"en": "Board", "zh-CN": "多学科讨论组"},
    "template": {"en": "Template", "zh-CN": "记录模板"},
    "discussed": {"en": "Discussed", "zh-CN": "讨论时间"},
    "not_recorded": {"en": "not recorded", "zh-CN": "未记录"},
    "amends": {"en": "Amends version {version}", "zh-CN": "修订第{version}版"},
    "patient": {"en": "Patient", "zh-CN": "患者"},
    "name": {"en": "Name", "zh-CN": "姓名"},
    "mrn": {"en": "MRN", "zh-CN": "病历号"},
    "birth_date": {"en": "Date of birth", "zh-CN": "出生日期"},
    "sex": {"en": "Sex", "zh-CN": "性别"},
    "withheld": {
        "en": "Patient identifiers withheld: this copy is for an audience outside {institution}.",
        "zh-CN": "已隐去患者身份信息：本文件供{institution}以外的机构使用。",
    },
    "question": {"en": "Clinical question", "zh-CN": "临床问题"},
    "summary": {"en": "Clinical summary", "zh-CN": "病情摘要"},
    "original": {"en": "Original ({language})", "zh-CN": "原文（{language}）"},
    "translation": {
        "en": "Translation ({language}) by {translator}",
        "zh-CN": "译文（{language}），译者：{translator}",
    },
    "plan": {"en": "Consensus note", "zh-CN": "讨论共识记录"},
    "yes": {"en": "Yes", "zh-CN": "是"},
    "no": {"en": "No", "zh-CN": "否"},
    "attendance": {"en": "Attendance", "zh-CN": "参会人员"},
    "specialty": {"en": "Specialty", "zh-CN": "专科"},
    "institution": {"en": "Institution", "zh-CN": "机构"},
    "present": {"en": "Joined – left ({zone})", "zh-CN": "加入 – 离开（{zone}）"},
    "nobody": {"en": "No attendance was recorded.", "zh-CN": "未记录参会人员。"},
    "quorum": {"en": "Quorum", "zh-CN": "法定人数"},
    "required": {"en": "Required specialties", "zh-CN": "必需专科"},
    "none_required": {"en": "none", "zh-CN": "无"},
    "quorum_met": {"en": "Met", "zh-CN": "符合"},
    "quorum_missing": {
        "en": "Not met — missing: {specialties}",
        "zh-CN": "不符合 — 缺席专科：{specialties}",
    },
    "history": {"en": "Versions and amendments", "zh-CN": "版本与修订记录"},
    "version": {"en": "Version", "zh-CN": "版本"},
    "finalized": {"en": "Finalized (UTC)", "zh-CN": "定稿时间（UTC）"},
    "finalized_by": {"en": "By", "zh-CN": "定稿人"},
    "reason": {"en": "Reason", "zh-CN": "修订原因"},
    "first_version": {"en": "First version", "zh-CN": "初始版本"},
    "hash": {"en": "Hash", "zh-CN": "哈希值"},
    "signature": {"en": "Signature", "zh-CN": "电子签名"},
    "signed_by": {"en": "Signed by", "zh-CN": "签署人"},
    "signed_at": {"en": "Signed at", "zh-CN": "签署时间"},
    "key": {"en": "Key id", "zh-CN": "密钥标识"},
    "plan_hash": {"en": "Plan hash", "zh-CN": "共识意见哈希值"},
    "fingerprint": {"en": "Fingerprint", "zh-CN": "指纹"},
    "verify": {
        "en": "The signature covers the signed JSON of this version; "
        "check that export with `python -m server verify`.",
        "zh-CN": "签名覆盖本版本的签名JSON文件；可用 `python -m server verify` 校验该导出文件。",
    },
}

# Languages as each language names them: the code in English (as the issue asks), words in Chinese.
LANGUAGE_NAMES: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {"en": "en", "zh-CN": "英文"},
    "zh-CN": {"en": "zh-CN", "zh-CN": "中文"},
}

SEXES: Final[Mapping[str, Mapping[str, str]]] = {
    "female": {"en": "Female", "zh-CN": "女"},
    "male": {"en": "Male", "zh-CN": "男"},
    "other": {"en": "Other", "zh-CN": "其他"},
    "unknown": {"en": "Unknown", "zh-CN": "未知"},
}

# server/accounts.py's SPECIALTIES, as the client names them.
SPECIALTIES: Final[Mapping[str, Mapping[str, str]]] = {
    "surgery": {"en": "Surgery", "zh-CN": "外科"},
    "medical_oncology": {"en": "Medical oncology", "zh-CN": "肿瘤内科"},
    "radiation_oncology": {"en": "Radiation oncology", "zh-CN": "放射肿瘤科"},
    "radiology": {"en": "Radiology", "zh-CN": "影像科"},
    "pathology": {"en": "Pathology", "zh-CN": "病理科"},
    "nuclear_medicine": {"en": "Nuclear medicine", "zh-CN": "核医学科"},
    "nursing": {"en": "Nursing", "zh-CN": "护理"},
    "palliative_care": {"en": "Palliative care", "zh-CN": "姑息治疗"},
    "genetics": {"en": "Genetics", "zh-CN": "遗传学"},
    "other": {"en": "Other", "zh-CN": "其他"},
}

SYSTEMS: Final[Mapping[str, str]] = {"http://snomed.info/sct": "SNOMED CT"}
