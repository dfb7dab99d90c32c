"""Assembly: which size, site, side, count and diagnosis belong to which procedure."""

from __future__ import annotations


def performed(facts):
    return [p for p in facts.procedures if p.status == "performed"]


def test_lesion_list_items_lend_their_site_and_size(facts_of):
    f = facts_of(
        "Exam:\n#1 R forearm: 7 mm pearly papule.\n#2 L cheek: 4 mm scaly papule.\n"
        "A/P:\n#1 r/o BCC - shave bx performed.\n#2 r/o SCC - punch bx performed."
    )
    procs = performed(f)
    assert [(p.method, p.site, p.laterality) for p in procs] == [
        ("tangential", "forearm", "right"),
        ("punch", "cheek", "left"),
    ]


def test_one_sentence_two_sites_gives_two_biopsies(facts_of):
    procs = performed(facts_of("Shave bx of R cheek and L forearm lesions, r/o BCC."))
    assert sorted((p.site, p.laterality) for p in procs) == [
        ("cheek", "right"),
        ("forearm", "left"),
    ]
    assert all(p.kind == "biopsy" for p in procs)


def test_plan_and_procedure_note_are_one_procedure(facts_of):
    f = facts_of(
        "Assessment/Plan:\n1. Papule R forearm, r/o BCC - shave biopsy today.\n\n"
        "Procedure note: The R forearm lesion was anesthetized and removed by shave biopsy."
    )
    assert len(performed(f)) == 1


def test_excision_collects_size_and_margins(facts_of):
    f = facts_of(
        "Excision of 0.9 x 0.7 cm bx-proven BCC L back with 5 mm margins, layered closure 3.5 cm."
    )
    exc = next(p for p in performed(f) if p.kind == "excision")
    assert exc.size_cm == 0.9 and exc.margin_cm == 0.5
    rep = next(p for p in performed(f) if p.kind == "repair")
    assert rep.method == "intermediate" and rep.length_cm == 3.5


def test_destruction_count_from_shorthand_and_words(facts_of):
    assert performed(facts_of("Cryo LN2 to AK x12 on the scalp."))[0].count == 12
    assert performed(facts_of("LN2 applied to eighteen AKs on the face."))[0].count == 18


def test_context_decides_status(facts_of):
    f = facts_of("Hx SCC L ear s/p Mohs 2019. Will bx R arm papule if it grows. No cryo today.")
    statuses = sorted(p.status for p in f.procedures)
    assert "performed" not in statuses
    assert {"historical", "negated"} <= set(statuses)


def test_diagnosis_linked_with_uncertainty(facts_of):
    f = facts_of("Pink papule R shin, suspicious for SCC; punch bx performed.")
    bx = performed(f)[0]
    linked = [f.diagnoses[i] for i in bx.diagnoses]
    assert any(d.concept == "scc" and d.uncertain for d in linked)


def test_pathology_section_marks_source(facts_of):
    f = facts_of("Pathology: nodular basal cell carcinoma, margins clear.")
    assert f.diagnoses[0].source == "pathology"


def test_per_site_numbers_are_summed(facts_of):
    f = facts_of(
        "Cryotherapy with liquid nitrogen to AKs: face nine, scalp six, dorsal hands three."
    )
    assert performed(f)[0].count == 18


def test_mohs_steps_are_not_separate_procedures(facts_of):
    f = facts_of(
        "PROCEDURE: Mohs micrographic surgery, R nasal ala, BCC.\n"
        "Stage I: the tumor was debulked with a curette and a saucerized layer was excised "
        "with a 2 mm margin.\n"
        "Stage II: 2 blocks, clear."
    )
    kinds = [p.kind for p in performed(f)]
    assert kinds == ["mohs"]
    assert performed(f)[0].stages == 2


def test_biopsy_of_another_lesion_during_mohs_is_kept(facts_of):
    f = facts_of(
        "MOHS NOTE. Dx: SCC R shoulder. Stage 1 - 3 blocks, clear.\n"
        "Also a pink papule on the L cheek: shave bx taken, r/o BCC."
    )
    assert sorted(p.kind for p in performed(f)) == ["biopsy", "mohs"]


def test_pdt_curettage_is_debridement_not_destruction(facts_of):
    f = facts_of(
        "PDT today for AKs of the face. I performed targeted curettage of hyperkeratotic AKs "
        "on the "
        "forehead, then applied Levulan and blue light for 16 min 40 s."
    )
    procs = performed(f)
    assert [p.kind for p in procs] == ["pdt"]
    assert procs[0].attrs.get("debridement") is True


def test_dated_procedure_is_history(facts_of):
    f = facts_of("Superficial BCC R upper arm (bx 2/19). ED&C today, 3 cycles.")
    assert [p.kind for p in performed(f)] == ["destruction"]


def test_hemostasis_cautery_is_not_a_destruction(facts_of):
    f = facts_of("Punch bx of L shin plaque. Hemostasis with electrocautery.")
    assert [p.kind for p in performed(f)] == ["biopsy"]


def test_topical_steroid_is_not_an_injection(facts_of):
    f = facts_of("Continue triamcinolone 0.1% ointment bid to the elbows.")
    assert not performed(f)
