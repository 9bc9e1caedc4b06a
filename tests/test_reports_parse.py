"""Reading reports: each fixture to its finding, and the handles that tie it to its job."""

from __future__ import annotations

import pytest

from faxgw.config import ServiceConfig
from faxgw.confirm.classify import classify, report_rules
from faxgw.confirm.correlate import correlate
from faxgw.domain import codes
from faxgw.domain.reports import MatchedBy, Outcome
from faxgw.fax.profiles import rules_for
from tests import report_fixtures as fx

JOB = "0193a4f2c1d0-9f3b2a71"
MSGID = f"<faxgw.{JOB}@contoso.example>"
NUMBER = "+4930123456"
INTERFAX = report_rules(ServiceConfig(profile="interfax"))
GENERIC = report_rules(ServiceConfig(
    confirm_success=[r"fax to .* was delivered"],
    confirm_failure={r"line (was )?busy": codes.REMOTE_BUSY,
                     r"number .* not a fax": codes.REMOTE_NOT_FAX}))


def _only(job_id: str) -> bool:
    return job_id == JOB


@pytest.mark.parametrize(("raw", "kind", "outcome", "code", "matched_by"), [
    (fx.exchange_ndr(JOB, MSGID, NUMBER), "ndr", Outcome.FAILED, codes.BOUNCED,
     MatchedBy.MESSAGE_ID),
    (fx.mta_dsn(JOB, MSGID, NUMBER), "dsn", Outcome.FAILED, codes.BOUNCED,
     MatchedBy.MESSAGE_ID),
    (fx.delayed_dsn(JOB, MSGID, NUMBER), "dsn", Outcome.PENDING, None, MatchedBy.MESSAGE_ID),
], ids=["exchange-ndr", "mta-dsn", "delayed-dsn"])
def test_bounces_are_read_by_structure(raw: bytes, kind: str, outcome: Outcome,
                                       code: int | None, matched_by: MatchedBy) -> None:
    _, finding = classify(raw, INTERFAX)
    assert (finding.kind, finding.outcome, finding.code) == (kind, outcome, code)
    assert correlate(finding, exists=_only, awaiting=lambda n: []) == (JOB, matched_by)


def test_exchange_ndr_keeps_the_diagnostic_and_ignores_the_localised_subject() -> None:
    _, finding = classify(fx.exchange_ndr(JOB, MSGID, NUMBER), report_rules(ServiceConfig()))
    assert "5.4.310" in finding.summary and "does not exist" in finding.summary
    assert finding.job_ids == (JOB,)


def test_a_returned_original_is_matched_by_its_job_header_when_the_id_is_foreign() -> None:
    raw = fx.mta_dsn(JOB, "<elsewhere@example.net>", NUMBER)
    _, finding = classify(raw, INTERFAX)
    assert correlate(finding, exists=_only, awaiting=lambda n: []) == (JOB,
                                                                       MatchedBy.JOB_HEADER)


@pytest.mark.parametrize(("raw", "kind", "outcome", "code"), [
    (fx.interfax_csv(NUMBER, status=0, description="OK"), "interfax-csv", Outcome.DELIVERED,
     codes.CONFIRMED),
    (fx.interfax_csv(NUMBER, status=3931, description="Busy", sent=0), "interfax-csv",
     Outcome.FAILED, codes.REMOTE_BUSY),
    (fx.interfax_xml(NUMBER, status=0, description="OK"), "interfax-xml", Outcome.DELIVERED,
     codes.CONFIRMED),
    (fx.interfax_xml(NUMBER, status=3912, description="Transmission incomplete", sent=2),
     "interfax-xml", Outcome.FAILED, codes.REMOTE_PARTIAL),
    (fx.interfax_xml(NUMBER, status=3220, description="Error", sent=1), "interfax-xml",
     Outcome.FAILED, codes.REMOTE_PARTIAL),
    (fx.interfax_xml(NUMBER, status=-1, description="In progress", sent=0), "interfax-xml",
     Outcome.PENDING, None),
    (fx.interfax_csv(NUMBER, status=3072, description="No fax tone detected", sent=0),
     "interfax-csv", Outcome.FAILED, codes.REMOTE_NOT_FAX),
], ids=["csv-ok", "csv-busy", "xml-ok", "xml-partial", "xml-pages-missing", "xml-pending",
        "csv-voice"])
def test_interfax_confirmations(raw: bytes, kind: str, outcome: Outcome,
                                code: int | None) -> None:
    _, finding = classify(raw, INTERFAX)
    assert (finding.kind, finding.outcome, finding.code) == (kind, outcome, code)
    assert finding.number == NUMBER


def test_interfax_success_names_pages_and_the_remote_station() -> None:
    _, finding = classify(fx.interfax_csv(NUMBER, status=0, description="OK", sent=2), INTERFAX)
    assert finding.pages == 2 and finding.remote_id == "+49 30 999999"
    assert "1234567890" in finding.summary


def test_interfax_is_matched_by_number_and_time_when_one_job_awaits_it() -> None:
    _, finding = classify(fx.interfax_csv(NUMBER, status=0, description="OK"), INTERFAX)
    assert correlate(finding, exists=_only, awaiting=lambda n: [JOB] if n == "4930123456"
                     else []) == (JOB, MatchedBy.NUMBER_TIME)
    # two jobs to the number await a report: no guess
    assert correlate(finding, exists=_only, awaiting=lambda n: [JOB, "x"]) == (
        None, MatchedBy.NONE)


def test_interfax_is_matched_by_the_token_its_subject_repeats() -> None:
    raw = fx.interfax_xml(NUMBER, status=0, description="OK",
                          subject=f"Fax to {NUMBER} [faxgw 9f3b2a71]")
    _, finding = classify(raw, INTERFAX)
    assert finding.tokens == ("9f3b2a71",)
    assert correlate(finding, exists=_only, awaiting=lambda n: [JOB, "other"],
                     by_token=lambda t: [JOB] if JOB.endswith(t) else []) == (
        JOB, MatchedBy.SUBJECT_TOKEN)


def test_the_token_is_in_the_subject_only_where_it_fits() -> None:
    rules = rules_for(ServiceConfig(profile="interfax"))
    assert rules.email_subject("Fax to +4930123456", JOB) == \
        "Fax to +4930123456 [faxgw 9f3b2a71]"
    assert rules.email_subject("x" * 50, JOB) == "x" * 50  # 60 characters at most
    assert rules_for(ServiceConfig()).email_subject("Fax", JOB) == "Fax"


def test_interfax_formats_are_not_read_for_a_profile_without_them() -> None:
    _, finding = classify(fx.interfax_csv(NUMBER, status=0, description="OK"),
                          report_rules(ServiceConfig()))
    assert finding.outcome is Outcome.NONE


@pytest.mark.parametrize(("text", "outcome", "code"), [
    (f"Your fax to {NUMBER} was delivered (3 pages).", Outcome.DELIVERED, None),
    (f"Your fax to {NUMBER} could not be sent: the line was busy.", Outcome.FAILED,
     codes.REMOTE_BUSY),
    (f"Your fax could not be sent: number {NUMBER} is not a fax machine.", Outcome.FAILED,
     codes.REMOTE_NOT_FAX),
])
def test_free_text_follows_the_services_rules(text: str, outcome: Outcome,
                                              code: int | None) -> None:
    _, finding = classify(fx.free_text(text, in_reply_to=MSGID), GENERIC)
    assert (finding.kind, finding.outcome, finding.code) == ("rules", outcome, code)
    assert correlate(finding, exists=_only, awaiting=lambda n: []) == (JOB,
                                                                       MatchedBy.MESSAGE_ID)


@pytest.mark.parametrize("raw", [fx.out_of_office(MSGID), fx.newsletter()],
                         ids=["out-of-office", "newsletter"])
def test_messages_that_are_no_report_match_nothing(raw: bytes) -> None:
    _, finding = classify(raw, GENERIC)
    assert finding.outcome is Outcome.NONE
    assert finding.kind in ("auto-reply", "bulk")


def test_a_report_about_a_notification_is_never_tied_to_a_job() -> None:
    raw = fx.mta_dsn(JOB, f"<faxgw-notify.{JOB}.1@contoso.example>", NUMBER)
    _, finding = classify(raw, GENERIC)
    assert correlate(finding, exists=_only, awaiting=lambda n: [JOB]) == (None,
                                                                         MatchedBy.NONE)


@pytest.mark.parametrize("raw", [
    b"", b"\x00\xff" * 100, b"Content-Type: multipart/report; report-type=delivery-status\r\n"
    b"\r\nnot really", b"Content-Type: text/xml\r\n\r\n<!DOCTYPE x [<!ENTITY a 'aaaa'>]><x>&a;</x>",
])
def test_garbage_is_unrecognised_not_a_crash(raw: bytes) -> None:
    _, finding = classify(raw, INTERFAX)
    assert finding.outcome is Outcome.NONE
