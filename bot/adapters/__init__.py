"""Platform adapters (console, Slack, Discord)."""


class StartupError(RuntimeError):
    """An adapter cannot start for a reason the admin must fix; the message is one line
    that names what to check (a token variable, an address)."""
