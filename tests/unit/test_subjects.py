import pytest

from services.kit import subjects


def test_subjects_follow_the_architecture():
    assert subjects.ledger_subject("mychannel", "compute_task") == "ledger.events.mychannel.compute_task"
    assert subjects.ledger_wildcard("mychannel") == "ledger.events.mychannel.>"
    assert subjects.work_subject("MyOrg1MSP", "run") == "work.MyOrg1MSP.run"


def test_unknown_work_kinds_are_refused():
    with pytest.raises(ValueError):
        subjects.work_subject("MyOrg1MSP", "explode")
