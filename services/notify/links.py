"""Signed links in messages: approve/reject a task (single use, expiring: the row in `action_links`
says so) and unsubscribe from a kind of notification (no sign-in; the signature is the proof)."""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from shared.errors import NotFound


@dataclass(frozen=True)
class Links:
    secret: str
    public_url: str

    def _signer(self, salt: str) -> URLSafeSerializer:
        return URLSafeSerializer(self.secret, salt=salt)

    def action(self, link_id: str) -> str:
        return f"{self.public_url.rstrip('/')}/notify/v1/actions/{self._signer('notify-action').dumps(link_id)}"

    def unsubscribe(self, person_id: str, kind: str) -> str:
        token = self._signer("notify-unsubscribe").dumps([person_id, kind])
        return f"{self.public_url.rstrip('/')}/notify/v1/unsubscribe/{token}"

    def action_id(self, token: str) -> str:
        try:
            value = self._signer("notify-action").loads(token)
        except BadSignature as exc:
            raise NotFound("This link is not one Pitcrew sent (or it was altered).") from exc
        if not isinstance(value, str):
            raise NotFound("This link is not one Pitcrew sent.")
        return value

    def unsubscriber(self, token: str) -> tuple[str, str]:
        try:
            value = self._signer("notify-unsubscribe").loads(token)
        except BadSignature as exc:
            raise NotFound("This link is not one Pitcrew sent (or it was altered).") from exc
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            raise NotFound("This link is not one Pitcrew sent.")
        return value[0], value[1]
