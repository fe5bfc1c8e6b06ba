"""the care vocabulary: care_term, and skills and needs written in its codes

Skills and needs were free text, so a PA with "Personal Care" never matched the need
`personal-care`. `care_term` holds the co-op's vocabulary (code, label, description,
kind, active), seeded with common UK social-care terms. Existing values of
`pa_skill.skill`, `service_user_profile.needs`, `cluster.need_tags` and `referral.needs`
are mapped to codes: lower-cased, apostrophes dropped, every run of other characters
made one hyphen, then a few synonyms (`meds` -> `medication-support`).

Nothing is lost. A value that maps to no seeded term becomes a term of its own: its
normalised form as the code, the first spelling seen as the label, inactive and marked
`needs_review`, so records keep it (and matching on it is unchanged) while the co-op
reviews it (`careTerms(needsReview: true)`: describe and activate it, or replace it).
The upgrade logs those terms, with the values they came from, as a warning.

`pa_skill.skill` references `care_term` by foreign key. PostgreSQL has no foreign key
on array elements, so a trigger (`care_terms_known`) refuses needs and need tags that
are not codes, and another (`care_term_in_use`) refuses deleting a term an array uses.

Revision ID: 0018
Revises: 0016
Create Date: 2026-11-28 13:00:00
"""

import hashlib
import logging
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

CODE_PATTERN = "^[a-z0-9]+(-[a-z0-9]+)*$"
MAX_CODE = 100

# (code, label, kind, description): written for this co-op; admins edit them later.
SEED: tuple[tuple[str, str, str, str], ...] = (
    (
        "personal-care",
        "Personal care",
        "NEED",
        "Help with washing, bathing, dressing, toileting and grooming.",
    ),
    (
        "medication-support",
        "Medication support",
        "NEED",
        "Prompting, assisting with or administering medicines, recorded on a MAR chart.",
    ),
    (
        "moving-and-handling",
        "Moving and handling",
        "NEED",
        "Safe help to move, stand, walk and transfer, with aids such as slide sheets.",
    ),
    (
        "hoist",
        "Hoisting",
        "NEED",
        "Transfers with a mobile or ceiling hoist and sling; usually two workers.",
    ),
    (
        "peg-feeding",
        "PEG feeding",
        "NEED",
        "Feeds, fluids and medicines through a gastrostomy (PEG or RIG) tube; site care.",
    ),
    (
        "catheter-care",
        "Catheter care",
        "NEED",
        "Care of an indwelling or suprapubic catheter: bag changes, hygiene, spotting infection.",
    ),
    ("stoma-care", "Stoma care", "NEED", "Emptying and changing colostomy or ileostomy bags."),
    (
        "continence-care",
        "Continence care",
        "NEED",
        "Support with continence products and routines, with dignity.",
    ),
    (
        "diabetes",
        "Diabetes",
        "NEED",
        "Blood glucose checks, insulin prompts, diet, and spotting a hypo or hyper.",
    ),
    ("dementia", "Dementia", "NEED", "Person-centred support for someone living with dementia."),
    (
        "autism",
        "Autism",
        "NEED",
        "Support for an autistic person: routine, communication and the sensory environment.",
    ),
    (
        "learning-disability",
        "Learning disability",
        "NEED",
        "Support for a person with a learning disability, including positive behaviour support.",
    ),
    (
        "mental-health",
        "Mental health",
        "NEED",
        "Support for a person living with a mental health condition.",
    ),
    (
        "epilepsy",
        "Epilepsy",
        "NEED",
        "Seizure awareness and first response; rescue medication where trained.",
    ),
    (
        "multiple-sclerosis",
        "Multiple sclerosis (MS)",
        "NEED",
        "Support for a person with MS: fatigue, mobility and changing needs.",
    ),
    (
        "parkinsons",
        "Parkinson's",
        "NEED",
        "Support for a person with Parkinson's: medicines on time, mobility, swallowing.",
    ),
    (
        "stroke",
        "Stroke",
        "NEED",
        "Support after a stroke: rehabilitation routines, one-sided weakness, communication.",
    ),
    (
        "acquired-brain-injury",
        "Acquired brain injury",
        "NEED",
        "Support for a person living with a brain injury: memory, behaviour, fatigue.",
    ),
    (
        "neurological-conditions",
        "Neurological conditions",
        "NEED",
        "Support for long-term neurological conditions such as MND or Huntington's.",
    ),
    (
        "sensory-impairment",
        "Sensory impairment",
        "NEED",
        "Support for a person with sight or hearing loss, or both.",
    ),
    (
        "end-of-life",
        "End of life care",
        "NEED",
        "Comfort and dignity in the last months and days, alongside palliative care teams.",
    ),
    (
        "meal-preparation",
        "Meal preparation",
        "NEED",
        "Preparing meals and drinks to the person's diet and textures.",
    ),
    (
        "safeguarding",
        "Safeguarding adults",
        "SKILL",
        "Training to recognise and report abuse and neglect.",
    ),
    ("first-aid", "First aid", "SKILL", "A current first aid certificate."),
    ("food-hygiene", "Food hygiene", "SKILL", "Food safety and hygiene training."),
)

# Normalised spellings of seeded terms (normalise() applied first).
SYNONYMS: dict[str, str] = {
    "meds": "medication-support",
    "medication": "medication-support",
    "medicines": "medication-support",
    "medication-administration": "medication-support",
    "manual-handling": "moving-and-handling",
    "mobility": "moving-and-handling",
    "hoisting": "hoist",
    "peg": "peg-feeding",
    "tube-feeding": "peg-feeding",
    "catheter": "catheter-care",
    "stoma": "stoma-care",
    "continence": "continence-care",
    "incontinence": "continence-care",
    "ms": "multiple-sclerosis",
    "parkinson": "parkinsons",
    "parkinsons-disease": "parkinsons",
    "ld": "learning-disability",
    "learning-disabilities": "learning-disability",
    "asd": "autism",
    "eol": "end-of-life",
    "end-of-life-care": "end-of-life",
    "palliative-care": "end-of-life",
    "neurological": "neurological-conditions",
    "abi": "acquired-brain-injury",
    "brain-injury": "acquired-brain-injury",
    "safeguarding-adults": "safeguarding",
}

# (table, array column) holding needs: checked by the trigger.
ARRAYS = (
    ("service_user_profile", "needs"),
    ("cluster", "need_tags"),
    ("referral", "needs"),
)

KNOWN_FUNCTION = """
CREATE FUNCTION care_terms_known() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unknown text;
BEGIN
    -- The column is named by the trigger's argument: read it through jsonb.
    SELECT string_agg(DISTINCT t, ', ') INTO unknown
    FROM jsonb_array_elements_text(to_jsonb(NEW) -> TG_ARGV[0]) AS t
    WHERE NOT EXISTS (SELECT 1 FROM care_term c WHERE c.code = t);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown care terms in %.%: %', TG_TABLE_NAME, TG_ARGV[0], unknown
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'care_term_known',
                  TABLE = TG_TABLE_NAME, COLUMN = TG_ARGV[0];
    END IF;
    RETURN NEW;
END $$
"""

IN_USE_FUNCTION = """
CREATE FUNCTION care_term_in_use() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM service_user_profile WHERE OLD.code = ANY (needs))
       OR EXISTS (SELECT 1 FROM cluster WHERE OLD.code = ANY (need_tags))
       OR EXISTS (SELECT 1 FROM referral WHERE OLD.code = ANY (needs)) THEN
        RAISE EXCEPTION 'care term % is in use', OLD.code
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'care_term_in_use',
                  TABLE = 'care_term';
    END IF;
    RETURN OLD;
END $$
"""


def normalise(value: str) -> str:
    """'  Personal Care ' -> 'personal-care'; "Parkinson's" -> 'parkinsons'."""
    lowered = re.sub(r"['\u2019]", "", value.strip().lower())
    return re.sub(r"[^a-z0-9]+", "-", lowered).strip("-")


def code_for(value: str, seeded: set[str]) -> str:
    """The code a free-text value maps to: a seeded term or synonym, else its own."""
    norm = normalise(value)
    if norm in seeded:
        return norm
    if norm in SYNONYMS:
        return SYNONYMS[norm]
    norm = norm[:MAX_CODE].strip("-")
    if not norm:  # nothing of a-z0-9 in it (e.g. another script): a stable made-up code
        norm = "unreviewed-" + hashlib.sha256(value.encode()).hexdigest()[:8]
    return norm


def upgrade() -> None:
    op.create_table(
        "care_term",
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("needs_review", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            f"code ~ '{CODE_PATTERN}' AND length(code) <= 100",
            name=op.f("ck_care_term_code_format"),
        ),
        sa.CheckConstraint("kind IN ('NEED', 'SKILL')", name=op.f("ck_care_term_kind_valid")),
        sa.CheckConstraint(
            "length(trim(label)) > 0 AND length(label) <= 200",
            name=op.f("ck_care_term_label_length"),
        ),
        sa.CheckConstraint(
            "length(description) <= 2000", name=op.f("ck_care_term_description_length")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_care_term")),
    )
    conn = op.get_bind()
    conn.execute(
        sa.text(
            "INSERT INTO care_term (code, label, kind, description)"
            " VALUES (:code, :label, :kind, :description)"
        ),
        [{"code": c, "label": lab, "kind": k, "description": d} for c, lab, k, d in SEED],
    )
    _map_existing(conn)
    op.create_foreign_key(
        op.f("fk_pa_skill_skill_care_term"), "pa_skill", "care_term", ["skill"], ["code"]
    )
    op.execute(KNOWN_FUNCTION)
    op.execute(IN_USE_FUNCTION)
    for table, column in ARRAYS:
        op.execute(
            f"CREATE TRIGGER {table}_care_terms_known BEFORE INSERT OR UPDATE OF {column}"
            f" ON {table} FOR EACH ROW EXECUTE FUNCTION care_terms_known('{column}')"
        )
    op.execute(
        "CREATE TRIGGER care_term_in_use BEFORE DELETE ON care_term"
        " FOR EACH ROW EXECUTE FUNCTION care_term_in_use()"
    )


def _map_existing(conn: sa.Connection) -> None:
    raw = conn.execute(
        sa.text(
            "SELECT DISTINCT v FROM ("
            " SELECT skill AS v FROM pa_skill"
            " UNION ALL SELECT unnest(needs) FROM service_user_profile"
            " UNION ALL SELECT unnest(need_tags) FROM cluster"
            " UNION ALL SELECT unnest(needs) FROM referral) AS found"
            " WHERE length(trim(v)) > 0 ORDER BY v"
        )
    ).scalars()
    seeded = {c for c, *_ in SEED}
    mapping = {value: code_for(value, seeded) for value in raw}
    unmapped: dict[str, list[str]] = {}
    for value, code in mapping.items():
        if code not in seeded:
            unmapped.setdefault(code, []).append(value)
    if unmapped:
        conn.execute(
            sa.text(
                "INSERT INTO care_term (code, label, kind, description, active, needs_review)"
                " VALUES (:code, :label, 'NEED', :description, false, true)"
            ),
            [
                {
                    "code": code,
                    "label": values[0][:200].strip(),
                    "description": (
                        "Added by migration 0018 from free text it could not map: "
                        + "; ".join(repr(v) for v in values)
                    )[:2000],
                }
                for code, values in sorted(unmapped.items())
            ],
        )
        log.warning(
            "Care vocabulary: %d free-text value(s) matched no term and were kept as "
            "inactive terms marked needs_review (careTerms(needsReview: true)): %s",
            len(unmapped),
            "; ".join(f"{code} <- {', '.join(map(repr, vs))}" for code, vs in unmapped.items()),
        )
    conn.execute(sa.text("CREATE TEMP TABLE care_term_map (raw text PRIMARY KEY, code text)"))
    if mapping:
        conn.execute(
            sa.text("INSERT INTO care_term_map VALUES (:raw, :code)"),
            [{"raw": r, "code": c} for r, c in mapping.items()],
        )
    # Two spellings of one skill merge into one row: the later expiry wins, never-expiring
    # best of all. Only rows that change are touched (each touch tells partners' feeds).
    conn.execute(
        sa.text(
            """
            CREATE TEMP TABLE care_term_skill AS
            SELECT s.pa_id, m.code AS skill,
                   CASE WHEN bool_or(s.expires_on IS NULL) THEN NULL
                        ELSE max(s.expires_on) END AS expires_on
            FROM pa_skill s JOIN care_term_map m ON m.raw = s.skill
            GROUP BY s.pa_id, m.code
            """
        )
    )
    conn.execute(
        sa.text(
            "DELETE FROM pa_skill s WHERE NOT EXISTS (SELECT 1 FROM care_term_skill n"
            " WHERE n.pa_id = s.pa_id AND n.skill = s.skill"
            " AND n.expires_on IS NOT DISTINCT FROM s.expires_on)"
        )
    )
    conn.execute(
        sa.text(
            "INSERT INTO pa_skill (pa_id, skill, expires_on)"
            " SELECT pa_id, skill, expires_on FROM care_term_skill ON CONFLICT DO NOTHING"
        )
    )
    for table, column in ARRAYS:
        conn.execute(
            sa.text(
                f"""
                UPDATE {table} t SET {column} = mapped.codes
                FROM (
                    SELECT x.ctid AS row_id,
                           coalesce((SELECT array_agg(DISTINCT m.code ORDER BY m.code)
                                     FROM unnest(x.{column}) AS v
                                     JOIN care_term_map m ON m.raw = v), '{{}}') AS codes
                    FROM {table} x WHERE cardinality(x.{column}) > 0
                ) AS mapped
                WHERE t.ctid = mapped.row_id AND t.{column} IS DISTINCT FROM mapped.codes
                """
            )
        )
    conn.execute(sa.text("DROP TABLE care_term_map, care_term_skill"))


def downgrade() -> None:
    # The codes stay in the columns (they are text); only the vocabulary and its rules go.
    op.execute("DROP TRIGGER care_term_in_use ON care_term")
    for table, _column in ARRAYS:
        op.execute(f"DROP TRIGGER {table}_care_terms_known ON {table}")
    op.execute("DROP FUNCTION care_term_in_use()")
    op.execute("DROP FUNCTION care_terms_known()")
    op.drop_constraint(op.f("fk_pa_skill_skill_care_term"), "pa_skill", type_="foreignkey")
    op.drop_table("care_term")
