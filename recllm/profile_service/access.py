"""Who may call the profile service: the caller's token (gRPC metadata ``authorization: Bearer <token>``, signed
with the server keyring, ``recllm_proto.user_token``) decides.

* ``GetProfile`` / ``Forget``: the user's own token, or an ``admin`` token;
* ``IngestEvents``: a ``service`` (or ``admin``) token for events of any user; a user token only for that user's
  events (another user's event gets a rejected ack, the stream goes on).

No or a bad token aborts the call with UNAUTHENTICATED, a valid token that does not cover the request with
PERMISSION_DENIED. Messages name the reason only, never the token or a user id.
"""

from __future__ import annotations

import grpc

from recllm_proto.user_token import KeyringFile, TokenError, VerifiedToken, bearer_token

PROFILE_READERS = ("user", "admin")
INGESTERS = ("user", "service", "admin")


class ProfileAccess:
    def __init__(self, keys: KeyringFile):
        self.keys = keys

    def caller(self, context: grpc.ServicerContext, scopes: tuple[str, ...]) -> VerifiedToken:
        token = bearer_token(context.invocation_metadata())
        if not token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "no credential: send 'authorization: Bearer <token>' metadata")
        try:
            return self.keys.current().verify(token, scopes)
        except TokenError as error:
            code = grpc.StatusCode.PERMISSION_DENIED if error.reason.startswith("scope") \
                else grpc.StatusCode.UNAUTHENTICATED
            context.abort(code, str(error))

    def require_owner_or_admin(self, context: grpc.ServicerContext, user_id: str) -> VerifiedToken:
        caller = self.caller(context, PROFILE_READERS)
        if caller.scope == "user" and caller.subject != user_id:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          "the token is another user's: a user may read or forget only their own profile")
        return caller


def covers(caller: VerifiedToken, user_id: str) -> bool:
    """Whether ``caller`` may ingest an event of ``user_id``."""
    return caller.scope != "user" or caller.subject == user_id
