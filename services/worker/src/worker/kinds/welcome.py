"""The welcome e-mail, sent once per "user registered" event."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr

from meshplate_core.events import UserRegistered
from worker.kinds import JobKind
from worker.mail import Mailer


def welcome_message(user: UserRegistered, message: EmailMessage) -> EmailMessage:
    """The e-mail a new user receives, written into `message` (the mailer's, From set). Its
    Message-ID derives from the event, so a copy sent twice despite everything is recognisable
    as the same message."""
    message["To"] = formataddr((user.name, user.email))
    message["Subject"] = "Welcome to Meshplate"
    message["Message-ID"] = f"<{user.event_id}@meshplate>"
    message.set_content(
        f"Hello {user.name},\n\n"
        f"your account @{user.username} is ready. Log in with your username or this address.\n\n"
        "The Meshplate team\n"
    )
    return message


def welcome_email(mailer: Mailer) -> JobKind[UserRegistered]:
    """The kind: one e-mail through the SMTP relay."""

    async def run(user: UserRegistered) -> str:
        await mailer.send(welcome_message(user, mailer.message()))
        return f"welcome e-mail sent to {user.email}"

    return JobKind(
        name="welcome-email",
        model=UserRegistered,
        run=run,
        job_id=lambda user: f"welcome-email-{user.event_id}",
        owner_id=lambda user: user.user_id,
    )
