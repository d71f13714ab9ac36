"""Seeded, deterministic generator of realistic plan documents and of changes to them.

Plan `index` of `seed` comes from its own RNG (`random.Random(f"{seed}:{index}")`), so any plan can
be produced alone, in any order, in O(1) memory: a million plans are a loop, never a list.

Distributions are modelled on the CMS Health Insurance Exchange public use files (plan years
2014-2025): benefit names from "Benefits and Cost Sharing", deductibles by metal tier, catastrophic
deductibles equal to that year's ACA out-of-pocket maximum, family deductibles twice individual.
A labelled fraction of plans carries an injected anomaly; anomalous documents are still
schema-valid (plausible-looking bad data, not malformed JSON).

Everything here is pure: no I/O, no global RNG.
"""

from __future__ import annotations

import bisect
import itertools
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

__all__ = [
    "ANOMALY_KINDS",
    "ORGANISATIONS",
    "PLAN_TYPES",
    "SERVICE_BY_ID",
    "SERVICE_CATALOGUE",
    "SERVICE_ORG",
    "TYPICAL_DEDUCTIBLE",
    "Change",
    "GeneratedPlan",
    "Service",
    "anomaly_label",
    "anomaly_labels",
    "generate_plan",
    "iter_plans",
    "plan_id_for",
    "random_change",
]

# --------------------------------------------------------------------------- service catalogue

# The publisher of the shared service entities: one org for every catalogue service, so a service
# node is byte-identical in every plan that links it.
SERVICE_ORG = "cms-benefits.example"

# Qualifier suffix -> (popularity factor, copay multiplier). Out-of-network costs more and is
# subject to the plan deductible; a 90-day mail-order fill costs about 2.5 30-day copays.
_TIER1 = " (In-Network Tier 1)"
_TIER2 = " (In-Network Tier 2)"
_OON = " (Out-of-Network)"
_QUALIFIERS: dict[str, tuple[float, float]] = {
    "": (1.0, 1.0),
    _TIER1: (0.35, 0.9),
    _TIER2: (0.15, 1.3),
    _OON: (0.2, 1.8),
    " - Telehealth": (0.25, 0.5),
    " - Retail 30-Day Supply": (0.5, 1.0),
    " - Mail Order 90-Day Supply": (0.3, 2.5),
    " (Out-of-Network Pharmacy)": (0.15, 1.8),
}
_QUALIFIER_GROUPS: dict[str, tuple[str, ...]] = {
    "office": ("", _TIER1, _TIER2, _OON, " - Telehealth"),
    "facility": ("", _TIER1, _TIER2, _OON),
    "drug": (
        "",
        " - Retail 30-Day Supply",
        " - Mail Order 90-Day Supply",
        " (Out-of-Network Pharmacy)",
    ),
    "preventive": ("", _TIER1, _OON),
    "simple": ("", _TIER1, _OON),
    "single": ("",),
}

# Deductible rules for a planservice: "none" (copay only), "plan" (the plan deductible applies),
# "own" (a small separate deductible, as dental and vision riders have).
DeductibleRule = Literal["none", "plan", "own"]

# (benefit name, category, copay low, copay high, deductible rule, qualifier group), ordered from
# most to least commonly listed: the order is the Zipf popularity rank.
_BASE_BENEFITS: tuple[tuple[str, str, int, int, DeductibleRule, str], ...] = (
    ("Primary Care Visit to Treat an Injury or Illness", "primary", 15, 50, "none", "office"),
    ("Specialist Visit", "specialist", 30, 90, "none", "office"),
    ("Generic Drugs", "drugs", 5, 20, "none", "drug"),
    ("Preventive Care/Screening/Immunization", "primary", 0, 0, "none", "preventive"),
    ("Emergency Room Services", "emergency", 150, 500, "plan", "facility"),
    ("Preferred Brand Drugs", "drugs", 30, 75, "none", "drug"),
    (
        "Inpatient Hospital Services (e.g., Hospital Stay)",
        "inpatient",
        100,
        500,
        "plan",
        "facility",
    ),
    ("Urgent Care Centers or Facilities", "emergency", 35, 100, "none", "facility"),
    ("X-rays and Diagnostic Imaging", "imaging", 25, 100, "none", "facility"),
    ("Laboratory Outpatient and Professional Services", "lab", 0, 50, "none", "facility"),
    ("Mental/Behavioral Health Outpatient Services", "mental", 15, 60, "none", "office"),
    ("Outpatient Surgery Physician/Surgical Services", "outpatient", 50, 350, "plan", "facility"),
    ("Yearly Physical", "primary", 0, 0, "none", "preventive"),
    ("Non-Preferred Brand Drugs", "drugs", 60, 150, "none", "drug"),
    (
        "Outpatient Facility Fee (e.g., Ambulatory Surgery Center)",
        "outpatient",
        75,
        400,
        "plan",
        "facility",
    ),
    ("Imaging (CT/PET Scans, MRIs)", "imaging", 100, 400, "plan", "facility"),
    ("Well Baby Visits and Care", "pediatric", 0, 0, "none", "preventive"),
    ("Specialty Drugs", "drugs", 150, 500, "plan", "drug"),
    ("Emergency Transportation/Ambulance", "emergency", 100, 400, "plan", "simple"),
    ("Routine Dental Services (Adult)", "dental", 0, 50, "own", "simple"),
    ("Inpatient Physician and Surgical Services", "inpatient", 50, 300, "plan", "facility"),
    (
        "Other Practitioner Office Visit (Nurse, Physician Assistant)",
        "primary",
        15,
        50,
        "none",
        "office",
    ),
    ("Routine Eye Exam for Children", "vision", 0, 25, "none", "simple"),
    ("Eye Glasses for Children", "vision", 0, 25, "none", "simple"),
    ("Prenatal and Postnatal Care", "maternity", 0, 0, "none", "preventive"),
    (
        "Delivery and All Inpatient Services for Maternity Care",
        "maternity",
        150,
        500,
        "plan",
        "facility",
    ),
    ("Mental/Behavioral Health Inpatient Services", "mental", 100, 500, "plan", "facility"),
    ("Outpatient Rehabilitation Services", "rehab", 20, 70, "none", "office"),
    ("Chiropractic Care", "rehab", 20, 60, "none", "simple"),
    ("Dental Check-Up for Children", "pediatric", 0, 25, "none", "simple"),
    ("Substance Abuse Disorder Outpatient Services", "mental", 15, 60, "none", "office"),
    ("Substance Abuse Disorder Inpatient Services", "mental", 100, 500, "plan", "facility"),
    ("Skilled Nursing Facility", "inpatient", 50, 250, "plan", "facility"),
    ("Home Health Care Services", "rehab", 20, 75, "none", "simple"),
    ("Durable Medical Equipment", "other", 20, 150, "plan", "simple"),
    ("Hospice Services", "inpatient", 0, 100, "none", "simple"),
    ("Routine Eye Exam (Adult)", "vision", 10, 40, "none", "simple"),
    ("Habilitation Services", "rehab", 20, 70, "none", "office"),
    (
        "Rehabilitative Occupational and Rehabilitative Physical Therapy",
        "rehab",
        20,
        70,
        "none",
        "office",
    ),
    ("Rehabilitative Speech Therapy", "rehab", 20, 70, "none", "office"),
    ("Allergy Testing", "specialist", 20, 80, "none", "office"),
    ("Diabetes Education", "primary", 0, 30, "none", "office"),
    ("Basic Dental Care - Child", "pediatric", 10, 50, "own", "simple"),
    ("Basic Dental Care - Adult", "dental", 20, 75, "own", "simple"),
    ("Major Dental Care - Child", "pediatric", 50, 250, "own", "simple"),
    ("Major Dental Care - Adult", "dental", 75, 300, "own", "simple"),
    ("Orthodontia - Child", "pediatric", 100, 500, "own", "single"),
    ("Orthodontia - Adult", "dental", 150, 500, "own", "single"),
    ("Accidental Dental", "dental", 50, 250, "plan", "simple"),
    ("Dialysis", "outpatient", 30, 150, "plan", "facility"),
    ("Chemotherapy", "outpatient", 50, 300, "plan", "facility"),
    ("Radiation", "outpatient", 50, 300, "plan", "facility"),
    ("Infusion Therapy", "outpatient", 30, 200, "plan", "facility"),
    ("Transplant", "inpatient", 250, 500, "plan", "facility"),
    ("Bariatric Surgery", "inpatient", 250, 500, "plan", "facility"),
    ("Reconstructive Surgery", "outpatient", 100, 400, "plan", "facility"),
    ("Prosthetic Devices", "other", 50, 250, "plan", "simple"),
    ("Hearing Aids", "other", 50, 300, "plan", "simple"),
    ("Nutritional Counseling", "primary", 0, 40, "none", "office"),
    ("Sleep Studies", "specialist", 50, 250, "plan", "facility"),
    ("Infertility Treatment", "specialist", 50, 300, "plan", "simple"),
    ("Treatment for Temporomandibular Joint Disorders", "specialist", 30, 100, "none", "simple"),
    ("Acupuncture", "rehab", 20, 60, "none", "simple"),
    ("Weight Loss Programs", "other", 10, 50, "none", "simple"),
    ("Routine Foot Care", "specialist", 30, 75, "none", "simple"),
    ("Private-Duty Nursing", "inpatient", 50, 200, "plan", "simple"),
    ("Long-Term/Custodial Nursing Home Care", "inpatient", 100, 300, "plan", "single"),
    ("Applied Behavior Analysis Based Therapies", "mental", 20, 75, "none", "office"),
    ("Autism Spectrum Disorders", "mental", 20, 75, "none", "office"),
    ("Diabetes Care Management", "primary", 0, 40, "none", "office"),
    ("Inherited Metabolic Disorder - PKU", "other", 20, 100, "none", "simple"),
    ("Off Label Prescription Drugs", "drugs", 50, 150, "none", "drug"),
    ("Prescription Drugs Other", "drugs", 20, 100, "none", "drug"),
    ("Clinical Trials", "other", 50, 250, "plan", "simple"),
    ("Childhood Immunizations", "pediatric", 0, 0, "none", "preventive"),
    ("Newborn Hearing Screening", "pediatric", 0, 0, "none", "simple"),
    ("Contact Lenses for Children", "vision", 0, 25, "none", "simple"),
    ("Lactation Counseling and Breast Pumps", "maternity", 0, 0, "none", "simple"),
    ("Cosmetic Surgery", "outpatient", 250, 500, "plan", "single"),
    ("Abortion for Which Public Funding is Prohibited", "maternity", 50, 300, "plan", "single"),
)

# Zipf exponent of the base-benefit popularity: a few benefits are listed by almost every plan.
_ZIPF_EXPONENT = 1.1


@dataclass(frozen=True)
class Service:
    """One catalogue service (a shared entity) and how plans price it."""

    object_id: str
    name: str
    category: str
    weight: float
    copay_low: int
    copay_high: int
    copay_multiplier: float
    deductible_rule: DeductibleRule

    @property
    def typical_copay(self) -> float:
        """Midpoint copay, floored so $0 preventive services still have a scale for outliers."""
        return max((self.copay_low + self.copay_high) / 2 * self.copay_multiplier, 25.0)

    def node(self) -> dict[str, Any]:
        """A fresh `linkedService` node (identical in every plan)."""
        return {
            "_org": SERVICE_ORG,
            "objectId": self.object_id,
            "objectType": "service",
            "name": self.name,
        }


def _build_catalogue() -> tuple[Service, ...]:
    services: list[Service] = []
    for rank, (name, category, low, high, rule, group) in enumerate(_BASE_BENEFITS, start=1):
        base_weight = 1.0 / rank**_ZIPF_EXPONENT
        for suffix in _QUALIFIER_GROUPS[group]:
            popularity, multiplier = _QUALIFIERS[suffix]
            services.append(
                Service(
                    object_id=f"svc-{len(services) + 1:04d}",
                    name=name + suffix,
                    category=category,
                    weight=base_weight * popularity,
                    copay_low=low,
                    copay_high=high,
                    copay_multiplier=multiplier,
                    # Out-of-network care is always subject to the deductible.
                    deductible_rule="plan" if "Out-of-Network" in suffix else rule,
                )
            )
    return tuple(services)


SERVICE_CATALOGUE: tuple[Service, ...] = _build_catalogue()
SERVICE_BY_ID: dict[str, Service] = {s.object_id: s for s in SERVICE_CATALOGUE}
_SERVICE_CUM_WEIGHTS: list[float] = list(itertools.accumulate(s.weight for s in SERVICE_CATALOGUE))

# Pools for the "implausible_service_mix" anomaly: an infant/maternity/children's-vision plan that
# also lists an adult dental benefit.
_CHILD_MIX_POOL: tuple[Service, ...] = tuple(
    s
    for s in SERVICE_CATALOGUE
    if s.category in ("pediatric", "maternity") or (s.category == "vision" and "Children" in s.name)
)
_ADULT_DENTAL_POOL: tuple[Service, ...] = tuple(
    s for s in SERVICE_CATALOGUE if s.category == "dental" and "Adult" in s.name
)

# ------------------------------------------------------------------------------ plan attributes

# (_org, market share): a few large carriers and a long tail, as in most rating areas.
ORGANISATIONS: tuple[tuple[str, float], ...] = (
    ("northwind-health.example", 0.24),
    ("bluepeak-insurance.example", 0.18),
    ("harborline-care.example", 0.15),
    ("summit-mutual.example", 0.12),
    ("evergreen-health.example", 0.10),
    ("lakeside-medical.example", 0.09),
    ("cascade-benefits.example", 0.07),
    ("prairie-health-coop.example", 0.05),
)
_ORG_NAMES: tuple[str, ...] = tuple(org for org, _ in ORGANISATIONS)
_ORG_CUM: list[float] = list(itertools.accumulate(share for _, share in ORGANISATIONS))

PLAN_TYPES: tuple[tuple[str, float], ...] = (
    ("PPO", 0.30),
    ("HMO", 0.30),
    ("EPO", 0.15),
    ("POS", 0.10),
    ("inNetwork", 0.10),
    ("outOfNetwork", 0.05),
)
_PLAN_TYPE_NAMES: tuple[str, ...] = tuple(t for t, _ in PLAN_TYPES)
_PLAN_TYPE_CUM: list[float] = list(itertools.accumulate(w for _, w in PLAN_TYPES))

# Implied metal tier: (name, share, deductible median, log-sigma, low, high, copay multiplier).
# Not stored in the document, but it drives every cost in it.
_TIERS: tuple[tuple[str, float, float, float, int, int, float], ...] = (
    ("catastrophic", 0.03, 0.0, 0.0, 0, 0, 1.3),  # deductible = that year's out-of-pocket max
    ("bronze", 0.30, 7000.0, 0.15, 5000, 9000, 1.2),
    ("silver", 0.40, 4000.0, 0.25, 2500, 6000, 1.0),
    ("gold", 0.21, 1300.0, 0.40, 500, 2500, 0.8),
    ("platinum", 0.06, 0.0, 0.0, 0, 500, 0.6),
)
_TIER_CUM: list[float] = list(itertools.accumulate(t[1] for t in _TIERS))

# ACA annual limit on out-of-pocket costs (self-only), which catastrophic plans use as deductible.
_OOP_MAX_BY_YEAR: dict[int, int] = {
    2014: 6350, 2015: 6600, 2016: 6850, 2017: 7150, 2018: 7350, 2019: 7900,
    2020: 8150, 2021: 8550, 2022: 8700, 2023: 9100, 2024: 9450, 2025: 9200,
}  # fmt: skip
_FAMILY_SHARE = 0.30  # family coverage: the aggregate deductible is twice self-only

# Services per plan, 1..15, skewed toward 3-8.
_SERVICE_COUNT_CUM: list[float] = list(
    itertools.accumulate((2, 5, 10, 13, 14, 14, 12, 10, 7, 5, 3, 2, 1.5, 1, 0.5))
)
MAX_SERVICES = 15

_FIRST_DAY = date(2014, 1, 1).toordinal()
_DAYS = date(2025, 12, 31).toordinal() - _FIRST_DAY + 1

# ------------------------------------------------------------------------------------ anomalies

ANOMALY_KINDS: tuple[str, ...] = (
    "copay_above_deductible",
    "extreme_cost",
    "implausible_service_mix",
    "zero_cost_everything",
)
# "Typical" plan deductible used to scale extreme_cost outliers (20-100x this).
TYPICAL_DEDUCTIBLE = 4000


@dataclass(frozen=True)
class GeneratedPlan:
    """A plan document and its anomaly label (None for a normal plan)."""

    doc: dict[str, Any]
    anomaly: str | None


# ----------------------------------------------------------------------------------- internals


def _pick(rng: random.Random, cum_weights: Sequence[float]) -> int:
    """Index drawn with the given cumulative weights (one uniform draw, like random.choices)."""
    return bisect.bisect(cum_weights, rng.random() * cum_weights[-1], 0, len(cum_weights) - 1)


def _round_to(value: float, step: int) -> int:
    return int(round(value / step)) * step


def _pick_services(rng: random.Random, k: int, exclude: Sequence[str] = ()) -> list[Service]:
    """k distinct catalogue services by popularity (rejection: k is tiny next to the catalogue)."""
    chosen: list[Service] = []
    seen = set(exclude)
    attempts = 0
    while len(chosen) < k:
        attempts += 1
        if attempts > 50 * (k + 1):
            # Pathological exclusions: fall back to catalogue order, still deterministic.
            rest = [s for s in SERVICE_CATALOGUE if s.object_id not in seen]
            chosen.extend(rest[: k - len(chosen)])
            break
        service = SERVICE_CATALOGUE[_pick(rng, _SERVICE_CUM_WEIGHTS)]
        if service.object_id not in seen:
            seen.add(service.object_id)
            chosen.append(service)
    return chosen


def _cost_share(org: str, object_id: str, deductible: int, copay: int) -> dict[str, Any]:
    return {
        "deductible": deductible,
        "copay": copay,
        "_org": org,
        "objectId": object_id,
        "objectType": "membercostshare",
    }


def _service_costs(
    rng: random.Random, service: Service, plan_deductible: int, tier_multiplier: float
) -> tuple[int, int]:
    """(deductible, copay) of one planservice, in whole dollars."""
    # Triangular with the mode at the low end: most plans sit near the cheap end of a range.
    base = rng.triangular(service.copay_low, service.copay_high, service.copay_low)
    copay = round(base * service.copay_multiplier * tier_multiplier)
    if service.deductible_rule == "plan":
        deductible = plan_deductible
    elif service.deductible_rule == "own":
        deductible = _round_to(rng.uniform(25, 100), 25)
    else:
        deductible = 0
    return deductible, copay


def _plan_service(
    plan_id: str, org: str, k: int | str, service: Service, deductible: int, copay: int
) -> dict[str, Any]:
    ps_id = f"{plan_id}-ps-{k:02d}" if isinstance(k, int) else f"{plan_id}-ps-{k}"
    return {
        "_org": org,
        "objectId": ps_id,
        "objectType": "planservice",
        "linkedService": service.node(),
        "planserviceCostShares": _cost_share(org, f"{ps_id}-mcs", deductible, copay),
    }


def _draw_anomaly(rng: random.Random, anomaly_rate: float) -> str | None:
    """The plan's label: always the first two draws, so the rest of the stream (and so every
    normal plan) does not depend on the rate, and labels are cheap to compute alone."""
    u = rng.random()
    kind = ANOMALY_KINDS[rng.randrange(len(ANOMALY_KINDS))]
    return kind if u < anomaly_rate else None


def _check_args(seed: int, index: int, anomaly_rate: float) -> None:
    if not isinstance(seed, int) or not isinstance(index, int):
        raise TypeError("seed and index must be ints")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    if not 0.0 <= anomaly_rate <= 1.0:
        raise ValueError(f"anomaly_rate must be in [0, 1], got {anomaly_rate}")


def _plan_rng(seed: int, index: int) -> random.Random:
    # A string seed is hashed with SHA-512: stable across processes and PYTHONHASHSEED.
    return random.Random(f"{seed}:{index}")


def plan_id_for(seed: int, index: int) -> str:
    """The stable objectId of plan `index` of `seed`."""
    return f"plan-{seed}-{index:07d}"


# ---------------------------------------------------------------------------------- public API


def generate_plan(seed: int, index: int, anomaly_rate: float = 0.02) -> GeneratedPlan:
    """Plan number `index` for `seed`, computed from its own RNG (independent of every other)."""
    _check_args(seed, index, anomaly_rate)
    rng = _plan_rng(seed, index)
    anomaly = _draw_anomaly(rng, anomaly_rate)

    plan_id = plan_id_for(seed, index)
    org = _ORG_NAMES[_pick(rng, _ORG_CUM)]
    plan_type = _PLAN_TYPE_NAMES[_pick(rng, _PLAN_TYPE_CUM)]
    created = date.fromordinal(_FIRST_DAY + rng.randrange(_DAYS))
    tier, _, median, sigma, low, high, tier_multiplier = _TIERS[_pick(rng, _TIER_CUM)]
    family = rng.random() < _FAMILY_SHARE

    if tier == "catastrophic":
        deductible = _OOP_MAX_BY_YEAR[created.year]
    elif tier == "platinum":
        deductible = 0 if rng.random() < 0.4 else _round_to(rng.uniform(50, high), 50)
    else:
        deductible = _round_to(min(max(rng.lognormvariate(0.0, sigma) * median, low), high), 50)
    if family:
        deductible *= 2
    # Plan-level office copay: a quarter of plans have none, the rest mostly 5-75.
    copay = 0 if rng.random() < 0.25 else _round_to(rng.triangular(5, 75, 20), 5)
    # Keeps copay_above_deductible a property only anomalies have ($0-deductible plans => $0).
    copay = min(copay, deductible)

    n_services = _pick(rng, _SERVICE_COUNT_CUM) + 1
    services = _pick_services(rng, n_services)
    priced = [(s, *_service_costs(rng, s, deductible, tier_multiplier)) for s in services]
    if deductible == 0 and copay == 0 and all(d == 0 and c == 0 for _, d, c in priced):
        # A normal plan always costs something somewhere: all-zero is the anomaly's signature.
        first, _, _ = priced[0]
        priced[0] = (first, 0, max(first.copay_low, 10))

    if anomaly is not None:
        deductible, copay, priced = _inject(
            anomaly, rng, deductible, copay, priced, tier_multiplier
        )

    doc = {
        "objectId": plan_id,
        "objectType": "plan",
        "_org": org,
        "planType": plan_type,
        "creationDate": f"{created.month:02d}-{created.day:02d}-{created.year:04d}",
        "planCostShares": _cost_share(org, f"{plan_id}-mcs", deductible, copay),
        "linkedPlanServices": [
            _plan_service(plan_id, org, k, s, d, c) for k, (s, d, c) in enumerate(priced)
        ],
    }
    return GeneratedPlan(doc=doc, anomaly=anomaly)


_Priced = list[tuple[Service, int, int]]


def _inject(
    kind: str,
    rng: random.Random,
    deductible: int,
    copay: int,
    priced: _Priced,
    tier_multiplier: float,
) -> tuple[int, int, _Priced]:
    """Turn a normal plan's costs/services into the given anomaly."""
    if kind == "copay_above_deductible":
        deductible = _round_to(rng.uniform(0, 200), 50)
        copay = deductible + _round_to(rng.uniform(25, 300), 5)
    elif kind == "extreme_cost":
        factor = rng.uniform(20, 100)
        if rng.random() < 0.5:
            deductible = _round_to(TYPICAL_DEDUCTIBLE * factor, 50)
        else:
            k = rng.randrange(len(priced))
            service, d, _ = priced[k]
            priced[k] = (service, d, round(service.typical_copay * factor))
    elif kind == "zero_cost_everything":
        # Bronze-like shape (a long service list) with nothing to pay anywhere.
        extra = _pick_services(rng, max(0, 6 - len(priced)), [s.object_id for s, _, _ in priced])
        deductible = copay = 0
        priced = [(s, 0, 0) for s in [*(s for s, _, _ in priced), *extra]]
    elif kind == "implausible_service_mix":
        if rng.random() < 0.5:
            children = rng.sample(_CHILD_MIX_POOL, rng.randint(9, MAX_SERVICES - 1))
            dental = _ADULT_DENTAL_POOL[rng.randrange(len(_ADULT_DENTAL_POOL))]
            mix = [*children, dental]
            rng.shuffle(mix)
            priced = [(s, *_service_costs(rng, s, deductible, tier_multiplier)) for s in mix]
        else:
            # The same service linked again under new planservice ids.
            repeats = rng.randint(2, 4)
            k = rng.randrange(len(priced))
            priced = priced[: MAX_SERVICES - repeats]
            k = min(k, len(priced) - 1)
            service = priced[k][0]
            for _ in range(repeats):
                priced.insert(
                    rng.randrange(len(priced) + 1),
                    (service, *_service_costs(rng, service, deductible, tier_multiplier)),
                )
    else:  # pragma: no cover - ANOMALY_KINDS is closed
        raise ValueError(f"unknown anomaly kind {kind!r}")
    return deductible, copay, priced


def iter_plans(
    seed: int, count: int, start: int = 0, anomaly_rate: float = 0.02
) -> Iterator[GeneratedPlan]:
    """Plans `start` .. `start + count - 1` of `seed`, one at a time (a generator)."""
    _check_args(seed, start, anomaly_rate)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return (generate_plan(seed, i, anomaly_rate) for i in range(start, start + count))


def anomaly_labels(
    seed: int, count: int, anomaly_rate: float = 0.02
) -> Iterator[tuple[str, str | None]]:
    """(plan_id, anomaly) for plans 0 .. count-1: only the two label draws, no document built."""
    _check_args(seed, 0, anomaly_rate)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    for index in range(count):
        yield plan_id_for(seed, index), _draw_anomaly(_plan_rng(seed, index), anomaly_rate)


_PLAN_ID_RE = re.compile(r"^plan-(-?\d+)-(\d{7,})$")


def anomaly_label(plan_id: str, anomaly_rate: float = 0.02) -> str | None:
    """The anomaly the generator injected into plan `plan_id` (None: a normal plan).

    Raises ValueError for an id the generator did not make (see `plan_id_for`)."""
    match = _PLAN_ID_RE.match(plan_id)
    if match is None:
        raise ValueError(f"{plan_id!r} is not a generated plan id (plan-<seed>-<index>)")
    seed, index = int(match.group(1)), int(match.group(2))
    _check_args(seed, index, anomaly_rate)
    return _draw_anomaly(_plan_rng(seed, index), anomaly_rate)


# -------------------------------------------------------------------------------------- changes


@dataclass(frozen=True)
class Change:
    """One simulated write: a PATCH body, a full replacement document, or a delete."""

    kind: Literal["patch", "replace", "delete"]
    patch: dict[str, Any] | None = None
    document: dict[str, Any] | None = None


_CHANGE_KINDS: tuple[Literal["patch", "replace", "delete"], ...] = ("patch", "replace", "delete")
_EXTRA_ID_RE = re.compile(r"-ps-x(\d+)$")


def _next_extra_number(plan_id: str, items: Sequence[dict[str, Any]]) -> int:
    """Next n for a new planservice id f"{plan_id}-ps-x{n}" (never reuses an id in the plan)."""
    numbers = [
        int(m.group(1))
        for item in items
        if str(item.get("objectId", "")).startswith(plan_id)
        and (m := _EXTRA_ID_RE.search(str(item.get("objectId", ""))))
    ]
    return max(numbers, default=0) + 1


def _linked_ids(items: Sequence[dict[str, Any]]) -> list[str]:
    return [item["linkedService"]["objectId"] for item in items]


def _cost_scale(deductible: float) -> float:
    """Copay multiplier implied by a plan deductible (cheap plans have high copays)."""
    if deductible >= 5000:
        return 1.2
    if deductible >= 2500:
        return 1.0
    return 0.8


def _copy_cost_share(node: dict[str, Any], **costs: float) -> dict[str, Any]:
    return {
        "deductible": costs.get("deductible", node["deductible"]),
        "copay": costs.get("copay", node["copay"]),
        "_org": node["_org"],
        "objectId": node["objectId"],
        "objectType": "membercostshare",
    }


def _copy_plan_service(item: dict[str, Any], **costs: float) -> dict[str, Any]:
    return {
        "_org": item["_org"],
        "objectId": item["objectId"],
        "objectType": "planservice",
        "linkedService": dict(item["linkedService"]),
        "planserviceCostShares": _copy_cost_share(item["planserviceCostShares"], **costs),
    }


def _new_plan_services(
    rng: random.Random, current: dict[str, Any], items: Sequence[dict[str, Any]], count: int
) -> list[dict[str, Any]]:
    """`count` new planservices for services the plan does not link yet."""
    plan_id = current["objectId"]
    org = current["_org"]
    deductible = int(current["planCostShares"]["deductible"])
    scale = _cost_scale(deductible)
    first = _next_extra_number(plan_id, items)
    return [
        _plan_service(plan_id, org, f"x{first + n}", s, *_service_costs(rng, s, deductible, scale))
        for n, s in enumerate(_pick_services(rng, count, _linked_ids(items)))
    ]


def _random_patch(rng: random.Random, current: dict[str, Any]) -> dict[str, Any]:
    items: list[dict[str, Any]] = current.get("linkedPlanServices", [])
    costs = current["planCostShares"]
    roll = rng.random()
    if roll < 0.35 or not items:
        # Annual re-pricing of the plan's own cost shares.
        factor = rng.uniform(0.9, 1.15)
        deductible = _round_to(costs["deductible"] * factor, 50)
        body: dict[str, Any] = {"objectId": costs["objectId"], "deductible": deductible}
        if rng.random() < 0.5:
            body["copay"] = min(_round_to(costs["copay"] * factor, 5), max(deductible, 0))
        return {"planCostShares": body}
    if roll < 0.75 or len(items) >= MAX_SERVICES:
        item = items[rng.randrange(len(items))]
        item_costs = item["planserviceCostShares"]
        copay = max(0, round(item_costs["copay"] * rng.uniform(0.8, 1.3)) + rng.choice((0, 5)))
        return {
            "linkedPlanServices": [
                {
                    "objectId": item["objectId"],
                    "planserviceCostShares": {"objectId": item_costs["objectId"], "copay": copay},
                }
            ]
        }
    return {"linkedPlanServices": _new_plan_services(rng, current, items, 1)}


def _random_replacement(rng: random.Random, current: dict[str, Any]) -> dict[str, Any]:
    """The same plan re-priced for a new year, with a few services dropped and added."""
    costs = current["planCostShares"]
    factor = rng.uniform(0.92, 1.15)
    old_deductible = costs["deductible"]
    deductible = _round_to(old_deductible * factor, 50)
    copay = _round_to(costs["copay"] * factor, 5)
    if costs["copay"] <= old_deductible:
        copay = min(copay, deductible)  # a normal plan stays normal

    items = [
        _copy_plan_service(
            item,
            deductible=(
                deductible
                if item["planserviceCostShares"]["deductible"] == old_deductible
                else item["planserviceCostShares"]["deductible"]
            ),
            copay=round(item["planserviceCostShares"]["copay"] * factor),
        )
        for item in current.get("linkedPlanServices", [])
    ]
    drops = rng.randint(0, min(2, max(len(items) - 1, 0)))
    # Leave room for one new service, so the service list always changes (drop or add).
    drops = max(drops, min(len(items) - MAX_SERVICES + 1, len(items)))
    for _ in range(drops):
        items.pop(rng.randrange(len(items)))
    adding = min(rng.randint(0 if drops else 1, 2), MAX_SERVICES - len(items))
    repriced = {**current, "planCostShares": {**costs, "deductible": deductible}}
    items.extend(_new_plan_services(rng, repriced, current.get("linkedPlanServices", []), adding))

    return {
        "objectId": current["objectId"],
        "objectType": "plan",
        "_org": current["_org"],
        "planType": current["planType"],
        "creationDate": current["creationDate"],
        "planCostShares": _copy_cost_share(costs, deductible=deductible, copay=copay),
        "linkedPlanServices": items,
    }


def random_change(
    rng: random.Random,
    current: dict[str, Any],
    weights: tuple[float, float, float] = (0.7, 0.2, 0.1),
) -> Change:
    """A random change to `current` (not modified): patch, replace or delete by `weights`.

    Patches are nested-object merges: the planCostShares (identified by objectId), one existing
    planservice's cost shares, or one new planservice appended (id f"{plan_id}-ps-x{n}").
    Deterministic for a given rng state.
    """
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights must be three non-negative numbers, not all 0: {weights}")
    kind = _CHANGE_KINDS[_pick(rng, list(itertools.accumulate(weights)))]
    if kind == "delete":
        return Change(kind="delete")
    if kind == "replace":
        return Change(kind="replace", document=_random_replacement(rng, current))
    return Change(kind="patch", patch=_random_patch(rng, current))
