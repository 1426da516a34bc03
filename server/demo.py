"""Demo data: two institutions, one user per role, a weekly thoracic board, three cases."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import select

from .accounts import create_institution, create_user
from .boards import BoardSpec, add_member, create_board
from .cases import CaseIn, PatientIn, add_attachment, add_study, create_case, transition
from .db import AsyncSession
from .imaging.phantom import PhantomPatient, write_ct_series
from .models import Case, ImagingStudy, Institution, User
from .services import Services

__all__ = ["DEMO_PASSWORD", "DemoUser", "DEMO_USERS", "seed"]

DEMO_PASSWORD = "eboard-demo"
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
        assert ready.id is not None and preparing.id is not None and requested.id is not None
        return {
            "board_id": board.id,
            "ready_case": ready.id,
            "preparing_case": preparing.id,
            "requested_case": requested.id,
        }


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
    await services.dicom.ingest(session, case, user, files)
