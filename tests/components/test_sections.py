"""Section detection: EHR titles, titles alone on a line, MTSamples inline titles."""

from __future__ import annotations


def cats(nlp, text):
    return [c for c, _s, _e in nlp(text)._.dc_section_spans]


def test_ehr_template_sections(nlp):
    text = (
        "CC: spot on nose\nHPI: growing 2 months\nPMH: HTN\nExam: 5 mm papule R nasal ala\n"
        "Dermoscopy: arborizing vessels\nAssessment and Plan:\n1. r/o BCC - shave bx\n"
        "Procedure note: consent obtained\nPathology: BCC, nodular"
    )
    assert cats(nlp, text) == [
        "chief_complaint",
        "hpi",
        "history",
        "exam",
        "dermoscopy",
        "assessment_plan",
        "procedure",
        "pathology",
    ]


def test_title_alone_on_its_line(nlp):
    text = "Assessment and Plan\nAK scalp, LN2 x4\nProcedure Note\nCryotherapy done."
    assert cats(nlp, text) == ["assessment_plan", "procedure"]


def test_title_word_inside_a_sentence_is_not_a_section(nlp):
    text = "Exam: the plan was discussed with the patient and history reviewed."
    assert cats(nlp, text) == ["exam"]


def test_mtsamples_inline_titles(nlp):
    # MTSamples' bare "HISTORY:" is the history of the present illness
    text = "PREOPERATIVE DIAGNOSIS:,  Skin lesion.,PROCEDURE:,  Excision.,HISTORY:,  Healthy."
    assert cats(nlp, text) == ["preop_diagnosis", "procedure", "hpi"]


def test_section_offsets_slice_the_text(nlp):
    text = "HPI: itchy.\nPlan: cryo."
    doc = nlp(text)
    for _cat, start, end in doc._.dc_section_spans:
        assert 0 <= start < end <= len(text)
    assert text[doc._.dc_section_spans[-1][1] :].startswith("Plan")
