"""Demo data: two institutions, one user per role, a weekly thoracic board, three cases to
work on, and one case (DEMO-0001) discussed last week whose agreed plan is finalized and signed."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import select

from .accounts import create_institution, create_user
from .attendance import open_span
from .boards import BoardSpec, add_member, create_board
from .cases import CaseIn, PatientIn, add_attachment, add_study, create_case, transition
from .config import DEMO_PASSWORD
from .db import AsyncSession
from .imaging.phantom import PhantomPatient, write_ct_series
from .models import (
    AgendaItem,
    Board,
    BoardSession,
    Case,
    ImagingStudy,
    Institution,
    User,
    utcnow,
)
from .notes.document import update_writing
from .services import Services

__all__ = ["DEMO_PASSWORD", "DemoUser", "DEMO_USERS", "seed"]

_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@dataclass(frozen=True)
class DemoUser:
    username: str
    display_name: str
    role: str
    specialty: str | None
    home: bool
    board_role: str | None


DEMO_USERS = (
    DemoUser("admin", "Admin Wang", "admin", None, True, None),
    DemoUser("coordinator", "Coordinator Li Na", "coordinator", None, True, "coordinator"),
    DemoUser("chair", "Dr. Zhang Wei (chair)", "chair", "medical_oncology", True, "chair"),
    DemoUser("radiologist", "Dr. Chen Jie", "specialist", "radiology", True, "specialist"),
    DemoUser("pathologist", "Dr. Liu Yang", "specialist", "pathology", True, "specialist"),
    DemoUser("surgeon", "Dr. Zhao Lei", "specialist", "surgery", True, "specialist"),
    DemoUser("oncologist", "Dr. Sun Min", "specialist", "radiation_oncology", True, "specialist"),
    DemoUser("observer", "Nurse Huang Fang", "observer", "nursing", True, "observer"),
    DemoUser("records", "Records Office Xu", "records", None, True, None),
    DemoUser("external", "Dr. Emily Carter", "specialist", "medical_oncology", False, "specialist"),
)

_PATHOLOGY = (
    b"Pathology report\nSpecimen: CT-guided core biopsy, right upper lobe.\n"
    b"Diagnosis: invasive adenocarcinoma, acinar predominant. EGFR exon 19 deletion detected.\n"
)


async def seed(
    services: Services,
    password: str = DEMO_PASSWORD,
    *,
    imaging: bool = True,
    slices: int = 120,
    size: int = 512,
) -> dict[str, int]:
    """Seed a fresh database; refuses to seed one that already has demo users. With
    ``imaging``, the ready case gets a synthetic chest CT (native and JPEG-LS series)."""
    async with services.db.write() as session:
        if (await session.exec(select(User).where(User.username == "coordinator"))).first():
            raise RuntimeError("the database already holds demo data")
        home = await create_institution(
            session, code="HZ", name="Hangzhou First Hospital", timezone="Asia/Shanghai"
        )
        ext = await create_institution(
            session, code="ROC", name="Rochester Cancer Center", timezone="America/Chicago"
        )
        users: dict[str, User] = {}
        for d in DEMO_USERS:
            institution: Institution = home if d.home else ext
            assert institution.id is not None
            users[d.username] = await create_user(
                session,
                services,
                username=d.username,
                password=password,
                display_name=d.display_name,
                role=d.role,
                specialty=d.specialty,
                institution_id=institution.id,
                email=f"{d.username}@{institution.code.lower()}.example",
            )
        chicago = ZoneInfo("America/Chicago")
        tomorrow = datetime.now(chicago).date() + timedelta(days=1)
        assert home.id is not None
        board = await create_board(
            session,
            BoardSpec(
                name="Thoracic MDT",
                tumor_site="thoracic",
                timezone="America/Chicago",
                rrule=f"FREQ=WEEKLY;BYDAY={_WEEKDAYS[tomorrow.weekday()]}",
                start_time="07:30",
                duration_minutes=90,
                start_date=tomorrow,
                required_specialties=[
                    "radiology",
                    "pathology",
                    "surgery",
                    "medical_oncology",
                    "radiation_oncology",
                ],
            ),
            home_institution_id=home.id,
            horizon_weeks=services.settings.session_horizon_weeks,
        )
        for d in DEMO_USERS:
            if d.board_role:
                uid = users[d.username].id
                assert uid is not None
                await add_member(session, board, uid, d.board_role)
        coordinator = users["coordinator"]
        assert board.id is not None
        ready = await create_case(
            session,
            services,
            coordinator,
            CaseIn(
                board_id=board.id,
                patient=PatientIn("Wang Fang", "HZ00012345", date(1961, 3, 2), "female"),
                clinical_question="Stage IIIA EGFR+ adenocarcinoma: neoadjuvant osimertinib then "
                "surgery, or definitive chemoradiation?",
                clinical_summary="62岁女性，右上肺腺癌，EGFR 19外显子缺失，cT2aN2M0 IIIA期。",
                summary_language="zh-CN",
                summary_translation="62-year-old woman, right upper lobe adenocarcinoma, "
                "EGFR exon 19 deletion, cT2aN2M0 stage IIIA.",
                translation_language="en",
                translator="Coordinator Li Na",
                consent_external=True,
                consent_date=date.today() - timedelta(days=3),
            ),
        )
        preparing = await create_case(
            session,
            services,
            coordinator,
            CaseIn(
                board_id=board.id,
                patient=PatientIn("Liu Qiang", "HZ00067890", date(1955, 11, 20), "male"),
                clinical_question="Solitary 2.1 cm nodule, left lower lobe: resect or biopsy?",
                clinical_summary="Male, 71, ex-smoker; PET-avid LLL nodule, no nodes on PET.",
                summary_language="en",
                consent_external=True,
                consent_date=date.today() - timedelta(days=1),
            ),
        )
        requested = await create_case(
            session,
            services,
            coordinator,
            CaseIn(
                board_id=board.id,
                patient=PatientIn("Zhou Min", "HZ00099887", date(1970, 6, 15), "female"),
                clinical_question="Oligometastatic NSCLC, single brain lesion: local therapy?",
                clinical_summary="Female, 56; ALK-positive NSCLC with one 9 mm brain metastasis.",
                summary_language="en",
            ),
        )
        for case in (ready, preparing):
            await add_study(
                session,
                case,
                coordinator,
                uid=f"1.2.826.0.1.3680043.10.543.{case.id}",
                description="CT chest with contrast",
                modality="CT",
                study_date=date.today() - timedelta(days=10),
            )
            await transition(session, services.audit, case, coordinator, "accepted", None)
            await transition(session, services.audit, case, coordinator, "in_preparation", None)
        await add_attachment(
            session,
            services,
            ready,
            coordinator,
            filename="pathology.txt",
            content_type="text/plain",
            data=_PATHOLOGY,
        )
        await transition(session, services.audit, ready, coordinator, "ready", None)
        if imaging:
            await _attach_phantom(session, services, ready, coordinator, slices, size)
        for case in (ready, preparing, requested):
            await services.audit.append(
                session,
                actor_id=coordinator.id,
                action="case.create",
                target_type="case",
                target_id=case.id,
            )
        discussed = await _discussed_case(session, services, board, users)
        assert ready.id is not None and preparing.id is not None and requested.id is not None
    await _agree_plan(services, discussed, board, users["chair"])
    assert discussed.id is not None
    return {
        "board_id": board.id,
        "ready_case": ready.id,
        "preparing_case": preparing.id,
        "requested_case": requested.id,
        "plan_case": discussed.id,
    }


# Who attended last week's discussion of DEMO-0001, and when each joined (minutes from start).
_ATTENDED = {
    "chair": 0,
    "radiologist": 0,
    "pathologist": 1,
    "surgeon": 2,
    "oncologist": 0,
    "external": 3,
}


async def _discussed_case(
    session: AsyncSession, services: Services, board: Board, users: dict[str, User]
) -> Case:
    """DEMO-0001: ready, on the agenda of a session a week ago, attended (as media joins would
    record it), and marked discussed by the chair."""
    coordinator = users["coordinator"]
    assert board.id is not None
    case = await create_case(
        session,
        services,
        coordinator,
        CaseIn(
            board_id=board.id,
            patient=PatientIn("Chen Hui", "HZ00054321", date(1958, 9, 9), "male"),
            clinical_question="Stage IIB squamous cell carcinoma, right lower lobe: "
            "lobectomy alone or with adjuvant chemotherapy?",
            clinical_summary="68岁男性，右下肺鳞癌，cT3N0M0 IIB期，ECOG 1，肺功能可耐受肺叶切除。",
            summary_language="zh-CN",
            summary_translation="68-year-old man, right lower lobe squamous cell carcinoma, "
            "cT3N0M0 stage IIB, ECOG 1, lung function allows lobectomy.",
            translation_language="en",
            translator="Coordinator Li Na",
            consent_external=True,
            consent_date=date.today() - timedelta(days=14),
        ),
    )
    case.number = "DEMO-0001"  # the referral number the hospital sent it under
    session.add(case)
    await add_study(
        session,
        case,
        coordinator,
        uid=f"1.2.826.0.1.3680043.10.543.{case.id}",
        description="CT chest with contrast",
        modality="CT",
        study_date=date.today() - timedelta(days=20),
    )
    await add_attachment(
        session,
        services,
        case,
        coordinator,
        filename="pathology.txt",
        content_type="text/plain",
        data=b"Pathology report\nBronchoscopic biopsy, right lower lobe: squamous cell "
        b"carcinoma, keratinising. PD-L1 TPS 30%.\n",
    )
    for state in ("accepted", "in_preparation", "ready"):
        await transition(session, services.audit, case, coordinator, state, None)
    start = utcnow().replace(second=0, microsecond=0) - timedelta(days=7)
    meeting = BoardSession(
        board_id=board.id, start_at=start, end_at=start + timedelta(minutes=90), origin="added"
    )
    session.add(meeting)
    await session.flush()
    assert meeting.id is not None and case.id is not None
    item = AgendaItem(session_id=meeting.id, case_id=case.id, position=0, timebox_minutes=20)
    session.add(item)
    await session.flush()
    for username, minutes in _ATTENDED.items():
        user = users[username]
        assert user.id is not None
        joined = start + timedelta(minutes=minutes)
        await open_span(
            session, meeting.id, user, item.id, joined, left=start + timedelta(minutes=21)
        )
    await transition(session, services.audit, case, users["chair"], "discussed", None)
    return case


def _demo_note() -> dict[str, object]:
    surgery = (date.today() + timedelta(days=7)).isoformat()
    return {
        "primary_cancer": {
            "code": "254637007",
            "histology": "1162767002",
            "laterality": "24028007",
        },
        "staging": {
            "prefix": "c",
            "t": "T3",
            "n": "N0",
            "m": "M0",
            "stage_group": "IIB",
            "system": "897275008",
        },
        "ecog": 1,
        "biomarkers": {"pd_l1_tps": 30, "egfr": "not_detected", "alk": "not_detected"},
        "intent": "373808002",
        "recommendations": [
            {"type": "surgery", "detail": "Right lower lobectomy with mediastinal node dissection"},
            {"type": "systemic_therapy", "detail": "Adjuvant cisplatin-vinorelbine, 4 cycles"},
        ],
        "guideline": {"name": "csco", "version": "2025", "concordant": True},
        "rationale": "cT3N0M0 (IIB) squamous cell carcinoma, fit for lobectomy (FEV1 81%). "
        "Adjuvant platinum doublet after R0 resection per CSCO and NCCN.\n"
        "术后辅助含铂双药化疗四周期。",
        "dissent": "Dr. Carter (Rochester) would also consider adjuvant immunotherapy given "
        "PD-L1 30%; to be re-discussed after pathologic staging.",
        "followup_actions": [
            {"action": "Book lobectomy", "owner": "Thoracic surgery", "due": surgery},
        ],
    }


async def _agree_plan(services: Services, case: Case, board: Board, chair: User) -> None:
    """Written into the case's note as a browser would, then finalized and signed by the chair
    through the same path as in a session."""
    note = await services.notes.load(case, board)
    shape = services.notes.templates.shape(note.template)
    update = update_writing(note.document.state(), shape, _demo_note())
    await services.notes.apply(note, update, chair.id)
    assert case.id is not None
    await services.plans.finalize(chair, case.id)
    services.notes.release(case.id)


async def _attach_phantom(
    session: AsyncSession, services: Services, case: Case, user: User, slices: int, size: int
) -> None:
    """Generate the demo CT (never committed) and store it against ``case``'s study."""
    study = (await session.exec(select(ImagingStudy).where(ImagingStudy.case_id == case.id))).one()
    patient = PhantomPatient()
    with tempfile.TemporaryDirectory(prefix="eboard-demo-ct-") as tmp:
        paths = await asyncio.to_thread(
            lambda: (
                write_ct_series(
                    Path(tmp) / "native",
                    slices=slices,
                    size=size,
                    patient=patient,
                    study_uid=study.study_instance_uid,
                    study_date=study.study_date,
                )
                + write_ct_series(
                    Path(tmp) / "jls",
                    slices=slices,
                    size=size,
                    jpegls=True,
                    patient=patient,
                    study_uid=study.study_instance_uid,
                    series_number=2,
                    study_date=study.study_date,
                )
            )
        )
        files = [(p.name, p.read_bytes()) for p in paths]
    await services.dicom.ingest(session, case, user, await services.dicom.check(files))
