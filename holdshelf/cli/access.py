"""Who may use Holdshelf: staff accounts for the web app (``user``) and integration tokens for
the holds API (``token``)."""

from __future__ import annotations

import sys

import click

from holdshelf.cli.common import Context, pass_context
from holdshelf.errors import InvalidInput


@click.group()
def user() -> None:
    """Staff accounts for the web app (there is no default account)."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["staff", "admin"]), default="staff", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_context
def user_add(ctx: Context, name: str, role: str, password_stdin: bool) -> None:
    """Add a staff account (asks for its password)."""
    ctx.accounts.add_user(name, _password(password_stdin), role)
    click.echo(f"added {role} account {name}")


@user.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_context
def user_password(ctx: Context, name: str, password_stdin: bool) -> None:
    """Set a new password (and sign the account out everywhere)."""
    ctx.accounts.set_password(name, _password(password_stdin))
    click.echo(f"new password set for {name}")


@user.command("remove")
@click.argument("name")
@pass_context
def user_remove(ctx: Context, name: str) -> None:
    """Remove a staff account."""
    ctx.accounts.remove_user(name)
    click.echo(f"removed {name}")


@user.command("unlock")
@click.argument("name", required=False)
@click.option("--address", help="Unlock this address (a desk PC) instead of an account.")
@pass_context
def user_unlock(ctx: Context, name: str | None, address: str | None) -> None:
    """Let an account (or, with --address, an address) locked out by failed sign-ins sign in
    again now."""
    if (name is None) == (address is None):
        raise InvalidInput("name an account, or give --address ADDRESS")
    if address is not None:
        cleared = ctx.accounts.unlock_address(address)
        click.echo(f"unlocked {address} ({cleared} failed sign-ins forgotten)")
        return
    assert name is not None
    cleared = ctx.accounts.unlock(name)
    click.echo(f"unlocked {name} ({cleared} failed sign-ins forgotten)")


@user.command("list")
@pass_context
def user_list(ctx: Context) -> None:
    """List staff accounts, and how long any locked-out account must still wait."""
    from holdshelf.accounts import minutes_text

    for view in ctx.accounts.account_views():
        locked = f", locked out for {minutes_text(view.locked_for)}" if view.locked_for else ""
        click.echo(f"{view.name} ({view.role}{locked})")


@click.group()
def token() -> None:
    """Integration tokens for the holds API (/api/v1)."""


@token.command("create")
@click.argument("name")
@click.option("--branch", "branches", multiple=True, help="Limit to this branch (repeatable).")
@click.option(
    "--print-agent", is_flag=True, help="A branch print agent's token: its slips, nothing else."
)
@pass_context
def token_create(ctx: Context, name: str, branches: tuple[str, ...], print_agent: bool) -> None:
    """Create a token and print it, once: only its hash is kept."""
    from holdshelf.integrations import API, PRINT_AGENT

    secret = ctx.integrations.create_token(
        name, list(branches), PRINT_AGENT if print_agent else API
    )
    scope = ", ".join(sorted({ctx.settings.branch(b).id for b in branches})) or "every branch"
    if print_agent:
        scope = f"print agent of {scope}"
    click.echo(f"token {name} ({scope}); store it now, it is not shown again:")
    click.echo(secret)


@token.command("list")
@pass_context
def token_list(ctx: Context) -> None:
    """List tokens (never the tokens themselves)."""
    for view in ctx.integrations.tokens():
        scope = ", ".join(view.branches) or "every branch"
        if view.scope != "api":
            scope = f"{view.scope} of {scope}"
        state = "revoked" if view.revoked else "active"
        click.echo(f"{view.name}: {state}, {scope}, created {view.created_at:%Y-%m-%d}")


@token.command("revoke")
@click.argument("name")
@pass_context
def token_revoke(ctx: Context, name: str) -> None:
    """Revoke a token: it stops working at once."""
    ctx.integrations.revoke(name)
    click.echo(f"revoked {name}")
