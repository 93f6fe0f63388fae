"""The GetCredentials answer memo: canonical keys only, bounded by bytes."""

from __future__ import annotations

from pdsidecar.api.memo import ENTRY_OVERHEAD, MAX_KEY_BYTES, ResponseMemo, canonical
from pdsidecar_client.v1 import credentials_pb2 as pb


def _always() -> bool:
    return True


def test_only_the_canonical_encoding_is_a_key() -> None:
    request = pb.GetCredentialsRequest(
        account=pb.AccountRef(project_id="proj_1", account_id="apn_1"), source="notion"
    )
    plain = request.SerializeToString(deterministic=True)
    assert canonical(plain, pb.GetCredentialsRequest.FromString(plain))
    with_unknown = plain + b"\xc2\x3e\x03abc"  # field 1000, 3 bytes
    assert not canonical(with_unknown, pb.GetCredentialsRequest.FromString(with_unknown))
    repeated = plain + plain  # the same fields twice: parses to the same request
    assert not canonical(repeated, pb.GetCredentialsRequest.FromString(repeated))
    huge = pb.GetCredentialsRequest(source="x" * MAX_KEY_BYTES)
    raw = huge.SerializeToString(deterministic=True)
    assert not canonical(raw, huge)


def test_bytes_stay_under_the_bound_oldest_first() -> None:
    memo = ResponseMemo(max_bytes=10 * (ENTRY_OVERHEAD + 200))
    for i in range(1000):
        memo.put(i.to_bytes(100, "big"), b"r" * 100, _always)
        assert memo.bytes <= memo.max_bytes
    assert len(memo) == 10
    assert memo.get((999).to_bytes(100, "big")) == b"r" * 100
    assert memo.get((0).to_bytes(100, "big")) is None


def test_an_answer_larger_than_the_bound_is_not_kept() -> None:
    memo = ResponseMemo(max_bytes=1000)
    memo.put(b"k", b"r" * 2000, _always)
    assert len(memo) == 0 and memo.bytes == 0


def test_stale_entries_leave_and_give_their_bytes_back() -> None:
    memo = ResponseMemo(max_bytes=1 << 20)
    current = [True]
    memo.put(b"k", b"answer", lambda: current[0])
    assert memo.get(b"k") == b"answer"
    current[0] = False
    assert memo.get(b"k") is None
    assert (len(memo), memo.bytes) == (0, 0)
