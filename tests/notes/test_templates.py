"""The consensus-note templates: each example note passes, each bad note fails at its own field,
every field and choice is labelled in en and zh-CN, and the shape follows the field-kind rules."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from server.errors import ConfigError, FieldError, NotFound
from server.notes.templates import TEMPLATES_DIR, Field, TemplateSet

EXAMPLES = Path(__file__).parent / "examples"
TEMPLATE_IDS = ["breast", "colorectal", "generic", "thoracic"]


@pytest.fixture(scope="module")
def templates() -> TemplateSet:
    return TemplateSet()


def example(template_id: str) -> dict[str, Any]:
    note: dict[str, Any] = json.loads((EXAMPLES / f"{template_id}.json").read_text("utf-8"))
    return note


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node of a bundle that stands for a field or a choice, with where it is."""
    if not isinstance(node, dict):
        return
    for name, child in node.get("properties", {}).items():
        yield f"{path}.{name}".lstrip("."), child
        yield from walk(child, f"{path}.{name}".lstrip("."))
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}.0")
    for choice in node.get("oneOf", []):
        yield f"{path} = {choice.get('const')!r}", choice


def keys_anywhere(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from keys_anywhere(value)
    elif isinstance(node, list):
        for item in node:
            yield from keys_anywhere(item)


# ----------------------------------------------------------------------------- the set


def test_ids_are_the_templates_without_the_shared_definitions(templates: TemplateSet) -> None:
    assert templates.ids() == TEMPLATE_IDS


def test_summary_offers_bilingual_labels_and_the_tumor_sites_served(
    templates: TemplateSet,
) -> None:
    summary = {s["id"]: s for s in templates.summary()}
    assert list(summary) == TEMPLATE_IDS
    assert summary["thoracic"] == {
        "id": "thoracic",
        "label": {"en": "Thoracic oncology", "zh-CN": "胸部肿瘤"},
        "tumor_sites": ["thoracic", "lung"],
    }
    assert summary["generic"]["tumor_sites"] == []
    assert all(set(s["label"]) == {"en", "zh-CN"} for s in summary.values())


@pytest.mark.parametrize(
    ("tumor_site", "template_id"),
    [
        ("thoracic", "thoracic"),
        ("lung", "thoracic"),
        ("Lung ", "thoracic"),
        ("breast", "breast"),
        ("colorectal", "colorectal"),
        ("sarcoma", "generic"),
        ("", "generic"),
    ],
)
def test_for_site_picks_the_template_serving_the_board(
    templates: TemplateSet, tumor_site: str, template_id: str
) -> None:
    assert templates.for_site(tumor_site) == template_id


def test_unknown_template_id_is_not_found_on_every_call(templates: TemplateSet) -> None:
    calls: list[Callable[[], object]] = [
        lambda: templates.bundle("liver"),
        lambda: templates.shape("liver"),
        lambda: templates.validate("liver", {}),
        lambda: templates.label("liver", "intent", "en"),
        lambda: templates.choice_label("liver", "intent", "373808002", "en"),
    ]
    for call in calls:
        with pytest.raises(NotFound) as caught:
            call()
        assert caught.value.errors == [FieldError("template", "no template 'liver'")]


# --------------------------------------------------------------------------- examples


def test_every_template_has_an_example_note() -> None:
    assert sorted(p.stem for p in EXAMPLES.glob("*.json")) == TEMPLATE_IDS


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_example_note_is_valid(templates: TemplateSet, template_id: str) -> None:
    assert templates.validate(template_id, example(template_id)) == []


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_bundle_alone_validates_what_the_server_validates(
    templates: TemplateSet, template_id: str
) -> None:
    # The browser gets only the bundle: no registry, no common.json.
    validator = Draft202012Validator(templates.bundle(template_id), format_checker=FormatChecker())
    good = example(template_id)
    bad = copy.deepcopy(good)
    del bad["staging"]["stage_group"]
    bad["recommendations"][0]["type"] = "homeopathy"
    assert validator.is_valid(good)
    assert len(list(validator.iter_errors(bad))) == 2


# -------------------------------------------------------------------------- bad notes


def test_missing_stage_group_is_reported_at_the_stage_group(templates: TemplateSet) -> None:
    note = example("thoracic")
    del note["staging"]["stage_group"]
    assert templates.validate("thoracic", note) == [
        FieldError("staging.stage_group", "is required")
    ]


@pytest.mark.parametrize("nct", ["NCT123", "nct01234567", "NCT012345678", "NCT0123456a"])
def test_nct_number_in_the_wrong_format_is_reported_at_the_trial(
    templates: TemplateSet, nct: str
) -> None:
    note = example("thoracic")
    assert note["recommendations"][2]["type"] == "clinical_trial"
    note["recommendations"][2]["nct_number"] = nct
    errors = templates.validate("thoracic", note)
    assert [e.field for e in errors] == ["recommendations.2.nct_number"]


@pytest.mark.parametrize("intent", ["curative", "373808003", "363346000"])
def test_intent_outside_the_value_set(templates: TemplateSet, intent: str) -> None:
    note = example("breast")
    note["intent"] = intent
    assert templates.validate("breast", note) == [FieldError("intent", "is not in the value set")]


def test_clinical_trial_without_nct_number(templates: TemplateSet) -> None:
    note = example("thoracic")
    del note["recommendations"][2]["nct_number"]
    assert templates.validate("thoracic", note) == [
        FieldError("recommendations.2.nct_number", "is required")
    ]


def test_nct_number_is_only_required_on_a_clinical_trial(templates: TemplateSet) -> None:
    note = example("thoracic")
    note["recommendations"][2]["type"] = "molecular_testing"
    del note["recommendations"][2]["nct_number"]
    assert templates.validate("thoracic", note) == []


def test_not_concordant_without_a_reason(templates: TemplateSet) -> None:
    note = example("colorectal")
    del note["guideline"]["discordance_reason"]
    assert templates.validate("colorectal", note) == [
        FieldError("guideline.discordance_reason", "is required")
    ]


def test_concordant_needs_no_reason(templates: TemplateSet) -> None:
    note = example("colorectal")
    note["guideline"] = {"name": "esmo", "concordant": True}
    assert templates.validate("colorectal", note) == []


@pytest.mark.parametrize(
    "due", ["next week", "2025-02-30", "15/07/2025", "20250715", "2025-07-15T10:00:00"]
)
def test_followup_due_that_is_not_a_date(templates: TemplateSet, due: str) -> None:
    note = example("thoracic")
    note["followup_actions"][1]["due"] = due
    assert templates.validate("thoracic", note) == [
        FieldError("followup_actions.1.due", "must be a date (YYYY-MM-DD)")
    ]


def test_followup_action_without_owner(templates: TemplateSet) -> None:
    note = example("generic")
    del note["followup_actions"][0]["owner"]
    assert templates.validate("generic", note) == [
        FieldError("followup_actions.0.owner", "is required")
    ]


def test_unknown_properties_are_reported_where_they_are(templates: TemplateSet) -> None:
    note = example("breast")
    note["mood"] = "optimistic"
    note["staging"]["grade"] = "G2"
    note["recommendations"][1]["cost"] = 3
    assert templates.validate("breast", note) == [
        FieldError("mood", "is not a field of this template"),
        FieldError("recommendations.1.cost", "is not a field of this template"),
        FieldError("staging.grade", "is not a field of this template"),
    ]


def test_site_biomarkers_do_not_belong_to_another_site(templates: TemplateSet) -> None:
    note = example("breast")
    note["biomarkers"]["egfr"] = "l858r"
    assert templates.validate("breast", note) == [
        FieldError("biomarkers.egfr", "is not a field of this template")
    ]
    generic = example("generic")
    generic["biomarkers"] = {}
    assert templates.validate("generic", generic) == [
        FieldError("biomarkers", "is not a field of this template")
    ]


def test_empty_recommendations(templates: TemplateSet) -> None:
    note = example("colorectal")
    note["recommendations"] = []
    assert templates.validate("colorectal", note) == [
        FieldError("recommendations", "needs at least 1 entry")
    ]


def test_an_empty_materialised_note_lists_every_required_field(templates: TemplateSet) -> None:
    # Groups and lists are always present, empty scalars absent: what a fresh CRDT document gives.
    note: dict[str, Any] = {
        "primary_cancer": {},
        "staging": {},
        "biomarkers": {},
        "guideline": {},
        "recommendations": [],
        "followup_actions": [],
    }
    assert templates.validate("thoracic", note) == [
        FieldError("intent", "is required"),
        FieldError("primary_cancer.code", "is required"),
        FieldError("rationale", "is required"),
        FieldError("recommendations", "needs at least 1 entry"),
        FieldError("staging.stage_group", "is required"),
        FieldError("staging.system", "is required"),
    ]


def test_all_errors_at_once_sorted_with_list_indexes_in_number_order(
    templates: TemplateSet,
) -> None:
    note = example("thoracic")
    note["recommendations"] = [{"type": "surgery"}] * 9 + [
        {"type": "clinical_trial"},
        {"type": "clinical_trial", "nct_number": "NCT1"},
    ]
    note["ecog"] = 7
    note["biomarkers"]["pd_l1_tps"] = 120
    note["staging"]["t"] = "T5"
    assert templates.validate("thoracic", note) == [
        FieldError("biomarkers.pd_l1_tps", "must be at most 100"),
        FieldError("ecog", "is not in the value set"),
        FieldError("recommendations.9.nct_number", "is required"),
        FieldError("recommendations.10.nct_number", "must match the pattern ^NCT\\d{8}$"),
        FieldError("staging.t", "is not in the value set"),
    ]


def test_a_value_of_the_wrong_type_is_one_error(templates: TemplateSet) -> None:
    note = example("thoracic")
    note["ecog"] = True
    note["intent"] = 373808002
    note["guideline"]["concordant"] = "yes"
    note["biomarkers"]["pd_l1_tps"] = "5%"
    assert templates.validate("thoracic", note) == [
        FieldError("biomarkers.pd_l1_tps", "must be a number"),
        FieldError("ecog", "must be a whole number"),
        FieldError("guideline.concordant", "must be true or false"),
        FieldError("intent", "must be text"),
    ]


def test_a_note_that_is_not_an_object(templates: TemplateSet) -> None:
    assert templates.validate("generic", ["rationale"]) == [
        FieldError("note", "must be a group of fields")
    ]


def test_messages_never_echo_the_value(templates: TemplateSet) -> None:
    note = example("thoracic")
    note["rationale"] = "Patient Wang Fang, MRN HZ00012345. " * 600
    note["recommendations"][0]["detail"] = "Wang Fang " * 300
    errors = templates.validate("thoracic", note)
    assert errors == [
        FieldError("rationale", "is longer than 20000 characters"),
        FieldError("recommendations.0.detail", "is longer than 2000 characters"),
    ]
    assert all("Wang" not in e.message for e in errors)


def test_too_many_recommendations(templates: TemplateSet) -> None:
    note = example("generic")
    note["recommendations"] = [{"type": "watchful_waiting"}] * 21
    assert templates.validate("generic", note) == [
        FieldError("recommendations", "has more than 20 entries")
    ]


# ---------------------------------------------------------------------------- bundles


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_bundle_has_no_ref_left(templates: TemplateSet, template_id: str) -> None:
    keys = set(keys_anywhere(templates.bundle(template_id)))
    assert "$ref" not in keys
    assert "$defs" not in keys


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_every_field_and_choice_is_labelled_in_en_and_zh_cn(
    templates: TemplateSet, template_id: str
) -> None:
    bundle = templates.bundle(template_id)
    nodes = list(walk(bundle))
    assert len(nodes) > 100  # the walk does reach the choices
    unlabelled = [
        where
        for where, node in nodes
        if not all(str(node.get("x-label", {}).get(loc, "")).strip() for loc in ("en", "zh-CN"))
    ]
    assert unlabelled == []
    assert {"en", "zh-CN"} <= set(bundle["x-label"])


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_top_level_and_nested_objects_are_closed(templates: TemplateSet, template_id: str) -> None:
    bundle = templates.bundle(template_id)
    objects = [bundle] + [n for _, n in walk(bundle) if n.get("type") == "object"]
    objects += [n["items"] for _, n in walk(bundle) if n.get("type") == "array"]
    assert all(o["additionalProperties"] is False for o in objects)
    assert bundle["required"] == [
        "primary_cancer",
        "staging",
        "intent",
        "recommendations",
        "rationale",
    ]


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_coded_fields_follow_mcode(templates: TemplateSet, template_id: str) -> None:
    props = templates.bundle(template_id)["properties"]

    def codes(node: dict[str, Any]) -> list[Any]:
        return [c["const"] for c in node["oneOf"]]

    assert codes(props["intent"]) == ["373808002", "363676003", "399707004"]
    assert props["intent"]["x-system"] == "http://snomed.info/sct"
    assert codes(props["staging"]["properties"]["system"]) == ["897275008"]
    assert codes(props["staging"]["properties"]["prefix"]) == ["c", "p", "yc", "yp"]
    assert codes(props["ecog"]) == [0, 1, 2, 3, 4, 5]
    assert props["primary_cancer"]["properties"]["code"]["x-system"] == "http://snomed.info/sct"
    assert props["recommendations"]["items"]["properties"]["nct_number"]["pattern"] == (
        "^NCT\\d{8}$"
    )


def test_bundle_is_a_copy(templates: TemplateSet) -> None:
    templates.bundle("breast")["properties"].clear()
    assert "rationale" in templates.bundle("breast")["properties"]


# ------------------------------------------------------------------------------ shape


def test_shape_gives_each_field_its_crdt_kind(templates: TemplateSet) -> None:
    root = templates.shape("thoracic")
    assert root.kind == "map"
    assert root.children["rationale"] == Field("text")
    assert root.children["dissent"] == Field("text")
    assert root.children["ecog"] == Field("value")
    assert root.children["intent"] == Field("value")
    staging = root.children["staging"]
    assert staging.kind == "map"
    assert set(staging.children) == {"prefix", "t", "n", "m", "stage_group", "system"}
    assert all(child == Field("value") for child in staging.children.values())
    recommendations = root.children["recommendations"]
    assert recommendations.kind == "list"
    assert recommendations.item == Field(
        "map",
        {"type": Field("value"), "detail": Field("text"), "nct_number": Field("text")},
    )
    followup = root.children["followup_actions"].item
    assert followup is not None
    assert followup.children == {
        "action": Field("text"),
        "owner": Field("text"),
        "due": Field("value"),
    }
    guideline = root.children["guideline"].children
    assert guideline["concordant"] == Field("value")
    assert guideline["discordance_reason"] == Field("text")
    assert root.children["biomarkers"].children["pd_l1_tps"] == Field("value")


def test_generic_shape_has_no_biomarkers(templates: TemplateSet) -> None:
    assert "biomarkers" not in templates.shape("generic").children
    assert "biomarkers" in templates.shape("breast").children


# ----------------------------------------------------------------------------- labels


def test_label_by_dot_path_in_both_locales(templates: TemplateSet) -> None:
    assert templates.label("thoracic", "staging.stage_group", "zh-CN") == "分期组"
    assert templates.label("thoracic", "staging.stage_group", "en") == "Stage group"
    assert templates.label("breast", "intent", "zh-CN") == "治疗意图"
    assert templates.label("breast", "biomarkers.her2", "zh-CN") == "HER2状态"
    assert (
        templates.label("thoracic", "recommendations.2.nct_number", "en")
        == "Trial registration number (NCT)"
    )
    assert templates.label("thoracic", "recommendations.0", "zh-CN") == "推荐意见（按优先顺序）"
    assert templates.label("generic", "followup_actions.3.due", "zh-CN") == "截止日期"
    assert templates.label("colorectal", "", "zh-CN") == "结直肠癌"


def test_label_falls_back_to_english_and_to_the_key(templates: TemplateSet) -> None:
    assert templates.label("breast", "rationale", "fr") == "Rationale"
    assert templates.label("breast", "staging.grade", "en") == "grade"


def test_choice_label_names_a_coded_value(templates: TemplateSet) -> None:
    assert templates.choice_label("thoracic", "intent", "373808002", "zh-CN") == "根治性"
    assert templates.choice_label("thoracic", "intent", "363676003", "en") == "Palliative"
    assert templates.choice_label("thoracic", "ecog", 0, "en").startswith("0 – Fully active")
    assert templates.choice_label("thoracic", "staging.stage_group", "IIIA", "zh-CN") == "IIIA期"
    assert (
        templates.choice_label("thoracic", "recommendations.1.type", "surgery", "zh-CN") == "手术"
    )
    assert templates.choice_label("thoracic", "intent", "unknown", "en") == "unknown"


# --------------------------------------------------------------------- broken templates


def copy_templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, folder)
    return folder


def edit(folder: Path, name: str, change: Any) -> None:
    path = folder / f"{name}.json"
    doc = json.loads(path.read_text("utf-8"))
    change(doc)
    path.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")


def test_a_copy_of_the_templates_loads(tmp_path: Path) -> None:
    assert TemplateSet(copy_templates(tmp_path)).ids() == TEMPLATE_IDS


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (
            lambda d: d["properties"].update(
                tags={
                    "type": "array",
                    "items": {"type": "string"},
                    "x-label": {"en": "Tags", "zh-CN": "标签"},
                }
            ),
            "tags: the items of a list must be objects",
        ),
        (
            lambda d: d["properties"]["staging"]["x-label"].pop("zh-CN"),
            "staging: x-label needs en and zh-CN",
        ),
        (
            lambda d: d["properties"]["staging"]["properties"]["t"]["oneOf"][0]["x-label"].pop(
                "en"
            ),
            "staging.t = 'TX': x-label needs en and zh-CN",
        ),
        (
            lambda d: d["properties"]["staging"].pop("additionalProperties"),
            "staging: additionalProperties must be false",
        ),
        (
            lambda d: d["properties"].update(
                free={"x-label": {"en": "Free", "zh-CN": "自由"}, "anyOf": [{"type": "string"}]}
            ),
            "free: anyOf is not allowed",
        ),
        (
            lambda d: d["properties"].update(
                rationale={"$ref": "common.json#/$defs/rationale", "maxLength": 100}
            ),
            "'maxLength' next to $ref",
        ),
        (
            lambda d: d["properties"].update(intent={"$ref": "common.json#/$defs/purpose"}),
            "$ref cannot be resolved",
        ),
        (lambda d: d.update({"x-tumor-sites": ["breast"]}), "tumor site 'breast' is already"),
        (lambda d: d.update(type="objekt"), "not a valid JSON Schema"),
        (lambda d: d.pop("$schema"), "must declare $schema"),
        (lambda d: d.pop("x-tumor-sites"), "x-tumor-sites is missing"),
    ],
)
def test_a_broken_template_fails_at_start_naming_its_file(
    tmp_path: Path, change: Any, complaint: str
) -> None:
    folder = copy_templates(tmp_path)
    edit(folder, "thoracic", change)
    with pytest.raises(ConfigError) as caught:
        TemplateSet(folder)
    assert str(folder / "thoracic.json") in str(caught.value)
    assert complaint in str(caught.value)


def test_a_template_folder_without_common_definitions_fails(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "common.json").unlink()
    with pytest.raises(ConfigError, match="common.json"):
        TemplateSet(folder)


def test_unreadable_json_fails_naming_the_file(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "breast.json").write_text("{", "utf-8")
    with pytest.raises(ConfigError, match="breast.json"):
        TemplateSet(folder)
