"""The rules of a partnership between two instances (docs/federation.md, section 8).

Both sides keep a `partnership` row for the other. An admin proposes; the instance reads
the partner's manifest and sends it a signed `peerProposePartnership`; the partner's
admins accept (possibly with fewer scopes) or reject, and the answer comes back as
`peerAnswerPartnership`. Either side may then suspend (only it may resume) or end; the
other hears of it through `peerChangePartnership`. Ending deletes everything received
from the partner.

Calls to the partner are never made inside an open transaction: what must be true
before a call is committed first, and the call's outcome (`last_contact_at`, or
`last_error`) is committed after it in a step of its own, so a failure is recorded even
though the mutation reports an error. The flows take `steps` (the GraphQL layer's way of
running one committed transaction, raising `DomainError`/`DomainErrors` after rolling it
back) and return an `Outcome`: the partnership concerned (None when nothing was written)
and the errors for the payload.

Decisions (see the docs for the full state machine):
- a failed proposal leaves the row PROPOSED with `last_error`: proposing again re-sends
  it with the same `proposal_ref`;
- accepting and rejecting change nothing locally unless the partner took the answer;
- suspending, resuming and ending change locally first; a notice the partner did not
  take is recorded in `last_error` and the local change stands (our door refuses its
  calls anyway);
- crossing proposals (both sides proposed to each other): the one with the smaller
  `proposal_ref` stands on both sides; the other is refused (CLOSED) by the side whose
  own proposal stands, and replaced by the side whose proposal gives way.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import PartnerScope, PartnershipDirection, PartnershipSide, PartnershipStatus
from care.errors import DomainError, DomainErrors, ErrorCode, PartnerCode, forbidden, not_found
from care.events import PartnershipEvent, publish
from care.models import Partnership
from care.viewer import Viewer
from federation.client import (
    FederationClient,
    Manifest,
    PartnerError,
    PartnerErrorCode,
    normalise_base_url,
)
from federation.exchange import end_with_partnership
from federation.manifest import PROTOCOL_VERSIONS
from federation.outbox import send_later
from federation.partners import forget_partner_data, record_contact, store_keys

T = TypeVar("T")

PROPOSED = PartnershipStatus.PROPOSED.value
ACTIVE = PartnershipStatus.ACTIVE.value
REJECTED = PartnershipStatus.REJECTED.value
SUSPENDED = PartnershipStatus.SUSPENDED.value
ENDED = PartnershipStatus.ENDED.value
OUTGOING = PartnershipDirection.OUTGOING.value
INCOMING = PartnershipDirection.INCOMING.value
US = PartnershipSide.US.value
PARTNER = PartnershipSide.PARTNER.value

WHAT = "partnership"
# Proposals from instances we have no partnership with wait for an admin; anyone who can
# serve a manifest can propose, so how many may wait at once is bounded.
MAX_WAITING_PROPOSALS = 50
WAITING_LOCK = "coopnet: proposals waiting"

# The messages, as sent (docs/federation.md, section 8). Each answers with the
# receiver's status and agreed scopes after the message, or payload errors.
PEER_FIELDS = "status scopes errors { field message code }"
PROPOSE = (
    "mutation PeerPropose($input: PeerProposePartnershipInput!) "
    "{ peerProposePartnership(input: $input) { " + PEER_FIELDS + " } }"
)
ANSWER = (
    "mutation PeerAnswer($input: PeerAnswerPartnershipInput!) "
    "{ peerAnswerPartnership(input: $input) { " + PEER_FIELDS + " } }"
)
CHANGE = (
    "mutation PeerChange($input: PeerChangePartnershipInput!) "
    "{ peerChangePartnership(input: $input) { " + PEER_FIELDS + " } }"
)


class Steps(Protocol):
    """Runs one step in its own transaction and commits it; raises DomainError(s) after
    rolling it back."""

    def __call__(self, step: Callable[[AsyncSession], Awaitable[T]]) -> Awaitable[T]: ...


@dataclass(frozen=True)
class Outcome:
    partnership_id: int | None  # the row concerned; None when nothing was written
    errors: list[DomainError]


@dataclass(frozen=True)
class Peer:
    """What a call to the partner needs, read from its row."""

    id: int
    base_url: str
    endpoint: str
    keys: list[dict[str, str]]
    proposal_ref: uuid.UUID
    status: str
    direction: str
    requested: list[str]
    suspended_by: str | None


@dataclass(frozen=True)
class Answer:
    """The partner's answer to a message: its status and agreed scopes after it."""

    status: str | None
    scopes: list[str]


def canonical_scopes(scopes: Iterable[str]) -> list[str]:
    """Scopes without repeats, in the enum's order (how they are stored and sent)."""
    wanted = set(scopes)
    return [s.value for s in PartnerScope if s.value in wanted]


def partner_failure(error: PartnerError) -> DomainError:
    """A failed call to the partner, as a payload error."""
    code = {
        PartnerErrorCode.UNREACHABLE: PartnerCode.PARTNER_UNREACHABLE,
        PartnerErrorCode.BAD_MANIFEST: PartnerCode.PARTNER_BAD_MANIFEST,
        PartnerErrorCode.VERSION_MISMATCH: PartnerCode.VERSION_MISMATCH,
        PartnerErrorCode.REFUSED: PartnerCode.PARTNER_REFUSED,
    }.get(error.code, PartnerCode.PARTNER_BAD_ANSWER)
    if error.code == PartnerErrorCode.GRAPHQL_ERROR and error.reason not in (
        None,
        "INTERNAL_SERVER_ERROR",
    ):
        code = PartnerCode.PARTNER_REFUSED  # a coded refusal (FORBIDDEN, a payload error)
    return DomainError(code, f"The partner instance: {error.summary()}"[:500])


def no_client() -> PartnerError:
    return PartnerError(
        PartnerErrorCode.UNREACHABLE, "This instance has no federation client configured."
    )


# --- reading and writing rows -----------------------------------------------------------


async def _locked(session: AsyncSession, partnership_id: int) -> Partnership:
    row = await session.scalar(
        select(Partnership).where(Partnership.id == partnership_id).with_for_update()
    )
    if row is None:
        raise not_found(WHAT, "partnershipId")
    return row


def _peer(row: Partnership) -> Peer:
    return Peer(
        id=row.id,
        base_url=row.base_url,
        endpoint=row.graphql_endpoint,
        keys=list(row.keys),
        proposal_ref=row.proposal_ref,
        status=row.status,
        direction=row.direction,
        requested=list(row.requested_scopes),
        suspended_by=row.suspended_by,
    )


def _store_manifest(row: Partnership, manifest: Manifest, version: str) -> None:
    row.graphql_endpoint = manifest.graphql_endpoint
    row.protocol_version = version
    row.coop_name = (manifest.coop_name or "")[:500] or None
    row.home_la_code = (manifest.home_la_code or "")[:9] or None
    row.local_authorities = manifest.local_authorities
    row.keys = manifest.keys
    row.manifest_fetched_at = func.now()  # type: ignore[assignment]


async def _changed(session: AsyncSession, row: Partnership) -> None:
    """Flush the row and tell admins (sent at commit)."""
    row.updated_at = func.now()  # type: ignore[assignment]
    await session.flush()
    await publish(session, PartnershipEvent(kind=row.status, partnership_id=row.id))


def _fresh_start(row: Partnership) -> None:
    """A REJECTED or ENDED row proposed again: a new partnership under the old row. New
    pseudonyms too, so that references given under the old one cannot be linked."""
    row.proposal_ref = uuid.uuid4()
    row.granted_scopes = []
    row.suspended_by = None
    row.pseudonym_key = secrets.token_bytes(32)
    row.feed_cursor = None
    row.last_sync_at = None


def _transition(row: Partnership, status: str, *, suspended_by: str | None = None) -> None:
    row.status = status
    row.suspended_by = suspended_by


async def _after_call(
    session: AsyncSession,
    partnership_id: int,
    error: PartnerError | None,
    refreshed: Manifest | None = None,
) -> None:
    """What a call to the partner leaves on its row, and a notice to admins."""
    await record_contact(session, partnership_id, error)
    if refreshed is not None:  # it rotated its key: keep the new ones
        await store_keys(session, partnership_id, refreshed.keys)
    status = await session.scalar(
        select(Partnership.status).where(Partnership.id == partnership_id)
    )
    if status is not None:
        await publish(session, PartnershipEvent(kind=status, partnership_id=partnership_id))


async def _send(
    client: FederationClient | None,
    peer: Peer,
    query: str,
    field: str,
    variables: dict[str, Any],
) -> tuple[Answer, Manifest | None]:
    """Send one message to the partner; its payload errors are a refusal."""
    if client is None:
        raise no_client()
    result = await client.call(
        peer.endpoint, peer.keys, query, {"input": variables}, base_url=peer.base_url
    )
    payload = result.data.get(field)
    if not isinstance(payload, dict):
        raise PartnerError(PartnerErrorCode.BAD_RESPONSE, f"The answer has no {field}.")
    errors = payload.get("errors") or []
    if errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        raise PartnerError(
            PartnerErrorCode.REFUSED,
            str(first.get("message") or "refused")[:500],
            reason=str(first.get("code") or "")[:100] or None,
        )
    status = payload.get("status")
    scopes = payload.get("scopes") or []
    return (
        Answer(
            status=str(status) if status is not None else None,
            scopes=canonical_scopes(str(s) for s in scopes if isinstance(s, str)),
        ),
        result.refreshed,
    )


async def _call_and_record(
    steps: Steps,
    client: FederationClient | None,
    peer: Peer,
    query: str,
    field: str,
    variables: dict[str, Any],
) -> tuple[Answer | None, PartnerError | None]:
    """Send, then commit the outcome on the row (whatever happened)."""
    try:
        answer, refreshed = await _send(client, peer, query, field, variables)
    except PartnerError as exc:
        failure = exc
        await steps(lambda s: _after_call(s, peer.id, failure))
        return None, failure
    await steps(lambda s: _after_call(s, peer.id, None, refreshed))
    return answer, None


# --- what an admin does ---------------------------------------------------------------------


async def propose(
    steps: Steps,
    client: FederationClient | None,
    viewer: Viewer,
    base_url: str,
    scopes: Sequence[str],
) -> Outcome:
    """Propose a partnership to the instance at `base_url` (see the module's notes)."""
    wanted = canonical_scopes(scopes)
    errors: list[DomainError] = []
    if not wanted:
        errors.append(DomainError(ErrorCode.REQUIRED, "Ask for at least one scope.", "scopes"))
    try:
        target = normalise_base_url(base_url)
    except ValueError as exc:
        errors.append(DomainError(ErrorCode.INVALID, str(exc), "baseUrl"))
        target = ""
    if client is not None and target == normalise_base_url(client.own_base_url):
        errors.append(
            DomainError(ErrorCode.INVALID, "That is this instance's own base URL.", "baseUrl")
        )
    if errors:
        return Outcome(None, errors)

    async def existing(session: AsyncSession) -> Peer | None:
        row = await session.scalar(select(Partnership).where(Partnership.base_url == target))
        if row is None:
            return None
        _may_propose(row)
        return _peer(row)

    try:
        before = await steps(existing)
    except DomainError as exc:
        return Outcome(None, [exc])

    # The manifest first: nothing is written for an instance we cannot read or talk to.
    try:
        if client is None:
            raise no_client()
        manifest = await client.fetch_manifest(target)
        version = manifest.common_version()
        if version is None:
            raise PartnerError(
                PartnerErrorCode.VERSION_MISMATCH,
                f"It speaks {', '.join(manifest.protocol_versions) or 'no version'}; "
                f"we speak {', '.join(PROTOCOL_VERSIONS)}.",
            )
    except PartnerError as exc:
        failure = exc
        if before is not None:
            known = before
            await steps(lambda s: _after_call(s, known.id, failure))
        return Outcome(before.id if before else None, [partner_failure(failure)])

    async def write(session: AsyncSession) -> Peer:
        row = await session.scalar(
            select(Partnership).where(Partnership.base_url == target).with_for_update()
        )
        if row is None:
            row = Partnership(
                base_url=target,
                proposal_ref=uuid.uuid4(),
                direction=OUTGOING,
                status=PROPOSED,
                requested_scopes=wanted,
                granted_scopes=[],
                proposed_by_id=viewer.member_id,
            )
            _store_manifest(row, manifest, version)
            session.add(row)
        else:
            _may_propose(row)
            if row.status in (REJECTED, ENDED):
                _fresh_start(row)
            row.direction = OUTGOING
            _transition(row, PROPOSED)
            row.requested_scopes = wanted
            row.granted_scopes = []
            row.proposed_by_id = viewer.member_id
            _store_manifest(row, manifest, version)
        await _changed(session, row)
        return _peer(row)

    try:
        peer = await steps(write)
    except (DomainError, DomainErrors) as exc:
        return Outcome(None, exc.errors if isinstance(exc, DomainErrors) else [exc])

    message = {
        "proposalRef": str(peer.proposal_ref),
        "baseUrl": client.own_base_url,
        "scopes": wanted,
        "protocolVersion": version,
    }
    reply, refused = await _call_and_record(
        steps, client, peer, PROPOSE, "peerProposePartnership", message
    )
    if refused is not None:
        return Outcome(peer.id, [partner_failure(refused)])
    if reply is not None and reply.status in (ACTIVE, SUSPENDED, REJECTED):
        # A re-sent proposal the partner had already answered (its answer was lost):
        # take the answer it reports.
        agreement = reply
        await steps(lambda s: _heal(s, peer, agreement))
    return Outcome(peer.id, [])


def _may_propose(row: Partnership) -> None:
    if row.status in (ACTIVE, SUSPENDED):
        raise DomainError(
            ErrorCode.ALREADY_EXISTS,
            "There is already a partnership with that instance: end it first.",
            "baseUrl",
        )
    if row.status == PROPOSED and row.direction == INCOMING:
        raise DomainError(
            ErrorCode.CLOSED,
            "That instance has proposed a partnership to us: accept or reject it.",
            "baseUrl",
        )


async def _heal(session: AsyncSession, peer: Peer, answer: Answer) -> None:
    row = await _locked(session, peer.id)
    if row.status != PROPOSED or row.proposal_ref != peer.proposal_ref:
        return
    if answer.status == REJECTED:
        _transition(row, REJECTED)
        await _changed(session, row)
        return
    agreed = [s for s in answer.scopes if s in row.requested_scopes]
    if agreed:
        row.granted_scopes = agreed
        if answer.status == SUSPENDED:
            _transition(row, SUSPENDED, suspended_by=PARTNER)
        else:
            _transition(row, ACTIVE)
        await _changed(session, row)


async def answer(
    steps: Steps,
    client: FederationClient | None,
    partnership_id: int,
    *,
    accepted: bool,
    scopes: Sequence[str] | None = None,
) -> Outcome:
    """Accept (with `scopes`, by default all requested) or reject a proposal made to us.
    The partner hears first; only once it has taken the answer does our row change."""

    async def check(session: AsyncSession) -> Peer:
        row = await _locked(session, partnership_id)
        if row.status != PROPOSED or row.direction != INCOMING:
            raise DomainError(
                ErrorCode.CLOSED,
                "Only a proposal made to us and not yet answered can be accepted or rejected.",
                "partnershipId",
            )
        return _peer(row)

    try:
        peer = await steps(check)
    except DomainError as exc:
        return Outcome(None if exc.code == ErrorCode.NOT_FOUND else partnership_id, [exc])
    granted: list[str] = []
    if accepted:
        granted = canonical_scopes(peer.requested if scopes is None else scopes)
        if not granted or not set(granted) <= set(peer.requested):
            return Outcome(
                peer.id,
                [
                    DomainError(
                        ErrorCode.INVALID,
                        "Grant at least one scope, and only scopes the partner asked for.",
                        "scopes",
                    )
                ],
            )
    message = {"proposalRef": str(peer.proposal_ref), "accepted": accepted, "scopes": granted}
    _, failure = await _call_and_record(
        steps, client, peer, ANSWER, "peerAnswerPartnership", message
    )
    if failure is not None:
        return Outcome(peer.id, [partner_failure(failure)])

    async def settle(session: AsyncSession) -> None:
        row = await _locked(session, peer.id)
        if row.status != PROPOSED or row.proposal_ref != peer.proposal_ref:
            raise DomainError(ErrorCode.CONFLICT, "The proposal changed meanwhile: read it again.")
        row.granted_scopes = granted
        _transition(row, ACTIVE if accepted else REJECTED)
        await _changed(session, row)

    try:
        await steps(settle)
    except DomainError as exc:
        return Outcome(peer.id, [exc])
    return Outcome(peer.id, [])


async def change(
    steps: Steps, client: FederationClient | None, partnership_id: int, status: str
) -> Outcome:
    """Suspend (status SUSPENDED), resume (ACTIVE) or end (ENDED) a partnership: the
    change and the notice to the partner are committed together, and the outbox delivers
    the notice (retrying while the partner cannot be reached; failures show in
    `last_error`). Asked again when the partnership is already so (suspended by us,
    active, ended), only a notice is queued again."""

    async def apply(session: AsyncSession) -> Peer:
        row = await _locked(session, partnership_id)
        if row.status == status and (status != SUSPENDED or row.suspended_by == US):
            # Already so here: the notice is sent again (one that failed, or was lost).
            return _peer(row)
        if status == SUSPENDED:
            if row.status != ACTIVE:
                raise DomainError(
                    ErrorCode.CLOSED, "Only an active partnership can be suspended.", None
                )
            _transition(row, SUSPENDED, suspended_by=US)
        elif status == ACTIVE:
            if row.status != SUSPENDED:
                raise DomainError(
                    ErrorCode.CLOSED, "Only a suspended partnership can be resumed.", None
                )
            if row.suspended_by != US:
                raise forbidden("The partner suspended this partnership: only it may resume.")
            _transition(row, ACTIVE)
        else:
            if row.status == REJECTED or (row.status == PROPOSED and row.direction == INCOMING):
                raise DomainError(
                    ErrorCode.CLOSED,
                    "Only an active or suspended partnership, or a proposal of ours, can be "
                    "ended (reject a proposal made to us).",
                    None,
                )
            _transition(row, ENDED)
            await forget_partner_data(session, row.id)
            await end_with_partnership(session, row.id, US)
        await _changed(session, row)
        peer = _peer(row)
        await _notify(session, peer, status)
        return peer

    try:
        peer = await steps(apply)
    except DomainError as exc:
        return Outcome(None if exc.code == ErrorCode.NOT_FOUND else partnership_id, [exc])
    return Outcome(peer.id, [])


async def _notify(session: AsyncSession, peer: Peer, status: str) -> None:
    """Queue the notice of a change in the transaction that makes it (the outbox): the
    partner hears of it once it can be reached, however long that takes."""
    await send_later(
        session,
        peer.id,
        "peerChangePartnership",
        CHANGE,
        {"input": {"proposalRef": str(peer.proposal_ref), "status": status}},
    )


# --- what the partner sends (PEERS) ---------------------------------------------------------


def _caller(viewer: Viewer) -> str:
    if viewer.partner is None:  # the PEERS rule admits only verified instances
        raise forbidden("Only another instance may send this.")
    try:
        return normalise_base_url(viewer.partner)
    except ValueError:  # the door gives a verified base URL; anything else is unknown
        raise not_found(WHAT, "baseUrl") from None


def _parse_ref(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError) as exc:
        raise DomainError(ErrorCode.INVALID, "proposalRef is a UUID.", "proposalRef") from exc


async def _row_of_caller(session: AsyncSession, caller: str) -> Partnership | None:
    return await session.scalar(
        select(Partnership).where(Partnership.base_url == caller).with_for_update()
    )


def _heard(row: Partnership, manifest: Manifest | None) -> None:
    """A call received from the partner: note the contact, keep keys it rotated."""
    row.last_contact_at = func.now()  # type: ignore[assignment]
    if manifest is not None and manifest.base_url == row.base_url:
        row.keys = manifest.keys
        row.manifest_fetched_at = func.now()  # type: ignore[assignment]


@dataclass(frozen=True)
class PeerOutcome:
    partnership_id: int
    status: str
    scopes: list[str]


def _outcome(row: Partnership) -> PeerOutcome:
    agreed = list(row.granted_scopes) if row.status in (ACTIVE, SUSPENDED) else []
    return PeerOutcome(row.id, row.status, agreed)


async def receive_proposal(
    session: AsyncSession,
    viewer: Viewer,
    manifest: Manifest | None,
    *,
    proposal_ref: str,
    base_url: str,
    scopes: Sequence[str],
    protocol_version: str,
) -> PeerOutcome:
    """`peerProposePartnership`: record the caller's proposal for our admins."""
    caller = _caller(viewer)
    ref = _parse_ref(proposal_ref)
    try:
        claimed = normalise_base_url(base_url)
    except ValueError as exc:
        raise DomainError(ErrorCode.INVALID, str(exc), "baseUrl") from exc
    if claimed != caller:
        raise forbidden("baseUrl must be the calling instance's own.", "baseUrl")
    if protocol_version not in PROTOCOL_VERSIONS:
        raise DomainError(
            PartnerCode.VERSION_MISMATCH,
            f"This instance speaks {', '.join(PROTOCOL_VERSIONS)}.",
            "protocolVersion",
        )
    wanted = canonical_scopes(scopes)
    if not wanted:
        raise DomainError(ErrorCode.REQUIRED, "Ask for at least one scope.", "scopes")
    if manifest is None or manifest.base_url != caller:
        raise DomainError(
            PartnerCode.PARTNER_BAD_MANIFEST, "Your manifest could not be read.", "baseUrl"
        )

    row = await _row_of_caller(session, caller)
    if row is None:
        # One proposer at a time past this point, so the count below stays true.
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(WAITING_LOCK))))
        waiting = await session.scalar(
            select(func.count())
            .select_from(Partnership)
            .where(Partnership.status == PROPOSED, Partnership.direction == INCOMING)
        )
        if (waiting or 0) >= MAX_WAITING_PROPOSALS:
            raise DomainError(
                ErrorCode.LIMIT_REACHED,
                f"{MAX_WAITING_PROPOSALS} proposals are waiting for this instance's admins: "
                "propose again later.",
            )
        row = Partnership(
            base_url=caller,
            proposal_ref=ref,
            direction=INCOMING,
            status=PROPOSED,
            requested_scopes=wanted,
            granted_scopes=[],
        )
        _store_manifest(row, manifest, protocol_version)
        session.add(row)
        _heard(row, None)
        await _changed(session, row)
        return _outcome(row)

    _heard(row, manifest)
    if row.proposal_ref == ref and row.direction == INCOMING:
        if row.status == PROPOSED:  # sent again (our answer or its record was lost)
            row.requested_scopes = wanted
            _store_manifest(row, manifest, protocol_version)
            await _changed(session, row)
        else:
            await session.flush()
        return _outcome(row)  # answered already: say how
    if row.status == PROPOSED and row.direction == OUTGOING:
        # Crossing proposals: the smaller proposal_ref stands on both sides.
        if row.proposal_ref < ref:
            await session.flush()
            raise DomainError(
                ErrorCode.CLOSED,
                "We have proposed a partnership to you (crossing proposals): answer ours.",
                "proposalRef",
            )
    elif row.status in (ACTIVE, SUSPENDED):
        # A fresh proposal from a partner we thought active: it has ended its side (our
        # notice of the end was lost); so does ours, and its proposal starts anew.
        await forget_partner_data(session, row.id)
        await end_with_partnership(session, row.id, PARTNER)
    if row.status != PROPOSED:
        _fresh_start(row)
    row.proposal_ref = ref
    row.direction = INCOMING
    _transition(row, PROPOSED)
    row.requested_scopes = wanted
    row.granted_scopes = []
    row.proposed_by_id = None
    _store_manifest(row, manifest, protocol_version)
    await _changed(session, row)
    return _outcome(row)


async def _row_for_message(
    session: AsyncSession, viewer: Viewer, proposal_ref: str, manifest: Manifest | None
) -> Partnership:
    caller = _caller(viewer)
    ref = _parse_ref(proposal_ref)
    row = await _row_of_caller(session, caller)
    if row is None or row.proposal_ref != ref:
        raise not_found(WHAT, "proposalRef")
    _heard(row, manifest)
    return row


async def receive_answer(
    session: AsyncSession,
    viewer: Viewer,
    manifest: Manifest | None,
    *,
    proposal_ref: str,
    accepted: bool,
    scopes: Sequence[str],
) -> PeerOutcome:
    """`peerAnswerPartnership`: the partner's answer to our proposal."""
    row = await _row_for_message(session, viewer, proposal_ref, manifest)
    granted = canonical_scopes(scopes) if accepted else []
    if row.direction != OUTGOING:
        raise not_found(WHAT, "proposalRef")
    if row.status != PROPOSED:
        same = (accepted and row.status == ACTIVE and list(row.granted_scopes) == granted) or (
            not accepted and row.status == REJECTED
        )
        if same:  # the same answer again (ours was lost on the way back)
            await session.flush()
            return _outcome(row)
        raise DomainError(ErrorCode.CLOSED, "That proposal is no longer open.", "proposalRef")
    if accepted:
        if not granted or not set(granted) <= set(row.requested_scopes):
            raise DomainError(
                ErrorCode.INVALID,
                "Grant at least one scope, and only scopes we asked for.",
                "scopes",
            )
        row.granted_scopes = granted
        _transition(row, ACTIVE)
    else:
        _transition(row, REJECTED)
    await _changed(session, row)
    return _outcome(row)


async def receive_change(
    session: AsyncSession,
    viewer: Viewer,
    manifest: Manifest | None,
    *,
    proposal_ref: str,
    status: str,
) -> PeerOutcome:
    """`peerChangePartnership`: the partner suspended, resumed or ended."""
    row = await _row_for_message(session, viewer, proposal_ref, manifest)
    if status == SUSPENDED:
        if row.status == SUSPENDED:  # already (by either side): nothing changes
            await session.flush()
            return _outcome(row)
        if row.status != ACTIVE:
            raise DomainError(ErrorCode.CLOSED, "The partnership is not active.", "status")
        _transition(row, SUSPENDED, suspended_by=PARTNER)
    elif status == ACTIVE:
        if row.status == ACTIVE:
            await session.flush()
            return _outcome(row)
        if row.status != SUSPENDED:
            raise DomainError(ErrorCode.CLOSED, "The partnership is not suspended.", "status")
        if row.suspended_by != PARTNER:
            raise forbidden("We suspended this partnership: only we may resume it.", "status")
        _transition(row, ACTIVE)
    elif status == ENDED:
        if row.status == ENDED:
            await session.flush()
            return _outcome(row)
        _transition(row, ENDED)
        await forget_partner_data(session, row.id)
        await end_with_partnership(session, row.id, PARTNER)
    else:
        raise DomainError(ErrorCode.INVALID, "status is SUSPENDED, ACTIVE or ENDED.", "status")
    await _changed(session, row)
    return _outcome(row)
