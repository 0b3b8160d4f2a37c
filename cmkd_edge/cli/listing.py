"""``cmkd-edge list``: print the names a registry accepts."""

from __future__ import annotations

import json

import click

from cmkd_edge._registry import REGISTRIES

KINDS = tuple(REGISTRIES)


@click.command("list")
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_cmd(kind: str, as_json: bool) -> None:
    """List registered names of KIND.

    \b
    Example:
      cmkd-edge list methods
    """
    from cmkd_edge._registry import get_registry

    reg = get_registry(kind)
    if as_json:
        click.echo(json.dumps({n: reg.help(n) for n in reg.names()}, indent=2))
        return
    for name in reg.names():
        click.echo(f"{name:20s} {reg.help(name)}")
